"""Flow run names that say what a run does, so runs can be told apart in the Prefect UI.

    temperature-etl 2024-03-01 15:00            the hour (the last full hour before a scheduled run)
    temperature-backfill 2024-01-01..2024-01-31 the range as given (a fan-out chunk: its window)
    raw-etl montrg-device/dbo.temperature       the device table
    raw-backfill dbo.temperature 2024-01-01..2024-01-31
    master-etl pg-fdw-v1-iot->pg-fdw-v2-hq      (dry-run when it writes nothing)
    sensor-collect 2024-03-01 15:00 +600s       the window it polls

Prefect calls these when a run starts, with the run's parameters in `prefect.runtime`. A name
never fails a run: parameters that do not parse are shown as given (the flow then rejects them
with its own error).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import date, datetime
from typing import Any

from flows.domain.windows import HOUR, etl_window, parse_bound, to_plant_local
from flows.settings import plant_tz


def _bound(value: Any) -> str:
    try:
        parsed = parse_bound(value, "bound")
    except (ValueError, TypeError):
        return str(value)
    if isinstance(parsed, datetime):
        return f"{to_plant_local(parsed, plant_tz()):%Y-%m-%d %H:%M}"
    return f"{parsed:%Y-%m-%d}" if isinstance(parsed, date) else str(value)


def _range(parameters: dict[str, Any]) -> str:
    return f"{_bound(parameters.get('start'))}..{_bound(parameters.get('end'))}"


def _hour(parameters: dict[str, Any], scheduled: datetime) -> str:
    hour = parameters.get("hour")
    try:
        if isinstance(hour, str):
            hour = datetime.fromisoformat(hour)
        window = etl_window(hour, scheduled, 0, plant_tz())
    except (ValueError, TypeError):
        return str(hour)
    return f"{window.end - HOUR:%Y-%m-%d %H:%M}"


def etl_name(parameters: dict[str, Any], scheduled: datetime) -> str:
    return f"temperature-etl {_hour(parameters, scheduled)}"


def backfill_name(parameters: dict[str, Any], scheduled: datetime) -> str:  # noqa: ARG001 - one signature for all
    return f"temperature-backfill {_range(parameters)}"


def raw_etl_name(parameters: dict[str, Any], scheduled: datetime) -> str:  # noqa: ARG001
    return f"raw-etl {parameters.get('device_block', 'montrg-device')}/{parameters.get('device_table', 'dbo.temperature')}"


def raw_backfill_name(parameters: dict[str, Any], scheduled: datetime) -> str:  # noqa: ARG001
    return f"raw-backfill {parameters.get('device_table', 'dbo.temperature')} {_range(parameters)}"


def master_name(parameters: dict[str, Any], scheduled: datetime) -> str:  # noqa: ARG001
    name = f"master-etl {parameters.get('source_block', 'pg-fdw-v1-iot')}->{parameters.get('target_block', 'pg-fdw-v2-hq')}"
    return name + (" dry-run" if parameters.get("dry_run") else "")


def collect_name(parameters: dict[str, Any], scheduled: datetime) -> str:
    start = parameters.get("window_start") or scheduled
    return f"sensor-collect {_bound(start)} +{float(parameters.get('duration_seconds', 600)):g}s"


def runtime_name(namer: Callable[[dict[str, Any], datetime], str]) -> Callable[[], str]:
    """`namer` as a Prefect flow_run_name callable: reads the run's parameters and scheduled time."""

    def name() -> str:
        from prefect.runtime import flow_run

        try:
            parameters = dict(flow_run.parameters or {})
            scheduled = flow_run.scheduled_start_time
            return namer(parameters, datetime.fromisoformat(scheduled.isoformat()))
        except Exception:  # a name must never fail the run
            return str(flow_run.flow_name or "flet-montrg")

    name.__name__ = namer.__name__
    return name
