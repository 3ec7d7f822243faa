"""The fault soak names every fault that may have ended a failed run, the latest first
(deployments.soak.suspected_faults)."""

from __future__ import annotations

from datetime import UTC, datetime
from types import SimpleNamespace

from deployments.faults import Fault
from deployments.soak import suspected_faults


def at(hh_mm_ss: str) -> datetime:
    return datetime.fromisoformat(f"2026-12-06T{hh_mm_ss}").replace(tzinfo=UTC)


async def nothing(fault: Fault) -> None:
    return None


def fault(name: str, injected: str, healed: str) -> Fault:
    return Fault(name, name, 60, (), nothing, injected=at(injected), healed=at(healed))


# the CI soak of a03279a: a raw-etl run scheduled during the database restart started a second
# before the Prefect server was killed and crashed for it (its container exited at 22:38:10)
FAULTS = [fault("database restart", "22:36:01", "22:37:02"), fault("Prefect server killed", "22:37:55", "22:39:02"),
          fault("worker killed", "22:39:55", "22:40:25")]
NOW = at("22:48:00")


def run_ended(hh_mm_ss: str | None, scheduled: str = "22:36:30") -> SimpleNamespace:
    return SimpleNamespace(end_time=at(hh_mm_ss) if hh_mm_ss else None, expected_start_time=at(scheduled))


def test_a_run_ended_while_two_faults_were_recent_names_both_the_latest_first():
    assert suspected_faults(run_ended("22:39:26"), FAULTS, NOW) == ["Prefect server killed", "database restart"]


def test_a_run_ended_during_one_fault_names_that_one():
    assert suspected_faults(run_ended("22:36:40"), FAULTS, NOW) == ["database restart"]
    assert suspected_faults(run_ended(None, scheduled="22:36:20"), FAULTS, NOW) == ["database restart"]


def test_a_run_ended_long_after_every_fault_names_none():
    assert suspected_faults(run_ended("22:47:00"), FAULTS, NOW) == []
