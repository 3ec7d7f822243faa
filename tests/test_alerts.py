"""Alerts after the hourly flows: exact threshold breaches, coverage of every active location,
one announcement per location, hour and measure at the highest level, escalation, resolution,
and alerts that follow the data whichever flow rewrote it. Real databases, a real Prefect server."""

from __future__ import annotations

import asyncio
import base64
import re
from datetime import UTC, datetime, timedelta

import polars as pl
import pytest
from sqlalchemy import insert, text

from flows import store, temperature_backfill, temperature_etl
from flows.store.schema import locations, thresholds
from tests.helpers import query, unique

HOUR = datetime(2024, 3, 1, 10)


@pytest.fixture(params=["postgresql->postgresql", "postgresql->mariadb"])
async def alert_pair(request, db_pair, monkeypatch):
    monkeypatch.setenv("MONTRG_NOTIFY_HOURS", "1000000")  # the test hours lie in 2024: announce them
    return await db_pair(request.param)

def readings(values: dict[str, list[float]]) -> pl.DataFrame:
    rows = [
        (loc, HOUR + timedelta(minutes=5 * i), v, 50.0, v + 2)
        for loc, vs in values.items()
        for i, v in enumerate(vs)
    ]
    return pl.DataFrame(rows, schema=["loc_id", "capture_dt", "temperature", "humidity", "pcv_temperature"], orient="row")


async def alerts_of(target) -> list[tuple]:
    df = await query(target, f"SELECT loc_id, measure, level, measured_value, status FROM {target.table('alerts')} ORDER BY loc_id, level")
    return [tuple(r) for r in df.iter_rows()]


async def run_hour(source, target):
    return await temperature_etl(hour=HOUR, lookback_hours=0, source_block=source.block, target_block=target.block)


async def test_alerts_are_exact_once_and_resolve_when_corrected(alert_pair):
    source, target = alert_pair
    async with target.db.engine.begin() as conn:
        await conn.execute(insert(thresholds), [{"loc_id": None, **row} for row in [
            {"threshold_id": 1, "threshold_type": "temperature", "level": "green", "min_value": 15.0, "max_value": 28.0, "is_active": True},
            {"threshold_id": 2, "threshold_type": "temperature", "level": "yellow", "min_value": 10.0, "max_value": 30.0, "is_active": True},
            {"threshold_id": 3, "threshold_type": "temperature", "level": "red", "min_value": 5.0, "max_value": 35.0, "is_active": True},
            # HOT2 may run warmer: its own yellow limit replaces the plant default there
            {"threshold_id": 4, "threshold_type": "temperature", "level": "yellow", "min_value": 10.0, "max_value": 50.0, "loc_id": "HOT2", "is_active": True},
            {"threshold_id": 5, "threshold_type": "temperature", "level": "red", "min_value": 0.0, "max_value": 1.0, "is_active": False},
        ]])
    await store.insert_raw(source.db, readings({"COOL": [20.0, 21.0], "HOT": [25.0, 33.0], "HOTTER": [25.0, 36.0], "HOT2": [36.0]}))
    since = datetime.now(UTC)  # events are stamped when emitted, on this machine's clock

    first = await run_hour(source, target)
    again = await run_hour(source, target)
    assert (first.totals["alerts_notified"], again.totals["alerts_notified"]) == (3, 0)

    expected = [
        ("HOT", "temperature", "yellow", 33.0, "open"),
        ("HOT2", "temperature", "red", 36.0, "open"),
        ("HOTTER", "temperature", "red", 36.0, "open"),
        ("HOTTER", "temperature", "yellow", 36.0, "open"),
    ]
    assert await alerts_of(target) == expected
    assert first.totals["alerts_opened"] == 4 and again.totals["alerts_opened"] == 0

    async with source.db.engine.begin() as conn:  # the 36 at HOTTER was a bad reading: corrected to 31
        await conn.execute(text(f"UPDATE {source.table('temperature_raw')} SET temperature = 31 WHERE loc_id = 'HOTTER' AND temperature = 36"))
    corrected = await run_hour(source, target)

    assert corrected.totals["alerts_resolved"] == 1
    assert await alerts_of(target) == [
        expected[0], expected[1],
        ("HOTTER", "temperature", "red", 36.0, "resolved"),
        ("HOTTER", "temperature", "yellow", 31.0, "open"),
    ]
    # one announcement per location, hour and measure, at the highest level; HOTTER's red, then
    # corrected to yellow, is not announced again (a level lower than the one announced)
    events = await breach_events(since, expect=3)
    assert sorted((e.resource.id, e.payload["level"], e.payload["replaces"]) for e in events) == [
        ("montrg.location.HOT", "yellow", None), ("montrg.location.HOT2", "red", None), ("montrg.location.HOTTER", "red", None),
    ]
    notified = await query(target, f"SELECT loc_id, level FROM {target.table('alerts')} WHERE notified_dt IS NOT NULL ORDER BY loc_id")
    assert notified.rows() == [("HOT", "yellow"), ("HOT2", "red"), ("HOTTER", "red")]


async def breach_events(since: datetime, expect: int, timeout: float = 20.0, prefix: str = "montrg.location."):
    """The montrg.threshold.breached and montrg.coverage.low events the test Prefect server received
    since `since`, about locations whose id starts with `prefix`."""
    from prefect.client.orchestration import get_client
    from prefect.events.filters import EventFilter, EventNameFilter, EventOccurredFilter, EventResourceFilter

    flt = EventFilter(
        occurred=EventOccurredFilter(since=since),
        event=EventNameFilter(name=["montrg.threshold.breached", "montrg.coverage.low"]),
        resource=EventResourceFilter(id_prefix=[prefix]),
    )
    deadline = asyncio.get_running_loop().time() + timeout
    async with get_client() as client:
        while True:
            page = await client.read_events(filter=flt, limit=50)
            if len(page.events) >= expect or asyncio.get_running_loop().time() > deadline:
                return page.events
            await asyncio.sleep(0.5)


async def set_thresholds(target, rows: list[tuple[str, float]]) -> None:
    """Plant-wide temperature limits: (level, max_value)."""
    async with target.db.engine.begin() as conn:
        await conn.execute(insert(thresholds), [
            {"threshold_id": n, "threshold_type": "temperature", "level": level, "min_value": -50.0, "max_value": hi,
             "loc_id": None, "is_active": True}
            for n, (level, hi) in enumerate(rows, start=1)
        ])


async def test_an_hour_that_goes_from_yellow_to_red_escalates_once(alert_pair):
    source, target = alert_pair
    await set_thresholds(target, [("yellow", 30.0), ("orange", 33.0), ("red", 35.0)])
    loc = unique("ESC-")
    since = datetime.now(UTC)
    await store.insert_raw(source.db, readings({loc: [25.0, 31.0]}))
    first = await run_hour(source, target)
    await store.insert_raw(source.db, readings({loc: [25.0, 31.0, 36.0]}).tail(1))  # a late reading, hotter
    escalated = await run_hour(source, target)
    again = await run_hour(source, target)

    assert [r.totals["alerts_notified"] for r in (first, escalated, again)] == [1, 1, 0]
    events = await breach_events(since, expect=2, prefix=f"montrg.location.{loc}")
    assert sorted((e.payload["level"], e.payload["replaces"], e.payload["escalated"]) for e in events) == [
        ("red", "yellow", True), ("yellow", None, False),
    ]
    levels = await query(target, f"SELECT level, status, replaced_level FROM {target.table('alerts')} WHERE loc_id = :loc ORDER BY level", loc=loc)
    assert levels.rows() == [("orange", "open", None), ("red", "open", "yellow"), ("yellow", "open", None)]


async def set_locations(target, rows: list[tuple[str, bool, float | None]]) -> None:
    async with target.db.engine.begin() as conn:
        await conn.execute(insert(locations), [
            {"loc_id": loc, "is_active": active, "poll_interval_s": interval} for loc, active, interval in rows
        ])


def every(loc: str, minutes: range, temperature: float = 20.0) -> pl.DataFrame:
    """Readings of `loc` at the given minutes of HOUR."""
    rows = [(loc, HOUR + timedelta(minutes=m), temperature, 50.0, temperature + 2) for m in minutes]
    return pl.DataFrame(rows, schema=["loc_id", "capture_dt", "temperature", "humidity", "pcv_temperature"], orient="row")


async def health_artifact() -> str:
    """The latest `plant-health` artifact's markdown."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey

    async with get_client() as client:
        found = await client.read_latest_artifacts(artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=["plant-health"])))
    return found[0].data


async def coverage_of(target, prefix: str) -> list[tuple]:
    df = await query(target, f"SELECT loc_id, level, measured_value, status FROM {target.table('alerts')} "
                             "WHERE measure = 'coverage' AND loc_id LIKE :p ORDER BY loc_id, level", p=f"{prefix}%")
    return df.rows()


async def test_coverage_alerts_for_silent_and_half_filled_hours_resolve_when_readings_arrive(alert_pair):
    source, target = alert_pair
    p = unique("COV")
    # every 5 minutes: 12 readings expected per hour; OFF is deactivated, DEF polls at the plant default (10 s)
    await set_locations(target, [(f"{p}-FULL", True, 300), (f"{p}-HALF", True, 300), (f"{p}-SILENT", True, 300),
                                 (f"{p}-OFF", False, 300), (f"{p}-DEF", True, None)])
    await store.insert_raw(source.db, pl.concat([every(f"{p}-FULL", range(0, 60, 5)), every(f"{p}-HALF", range(0, 30, 5)),
                                               every(f"{p}-DEF", range(0, 60, 1))]))
    since = datetime.now(UTC)
    first = await run_hour(source, target)

    assert await coverage_of(target, p) == [
        (f"{p}-DEF", "orange", round(60 / 360, 4), "open"),  # one reading a minute where 360 are expected
        (f"{p}-HALF", "orange", 0.5, "open"),
        (f"{p}-SILENT", "orange", 0.0, "open"),
        (f"{p}-SILENT", "red", 0.0, "open"),
    ]
    assert first.totals["alerts_notified"] == 3  # SILENT once, at red
    events = await breach_events(since, expect=3, prefix=f"montrg.location.{p}")
    assert sorted((e.event, e.resource.id, e.payload["level"]) for e in events) == [
        ("montrg.coverage.low", f"montrg.location.{p}-DEF", "orange"),
        ("montrg.coverage.low", f"montrg.location.{p}-HALF", "orange"),
        ("montrg.coverage.low", f"montrg.location.{p}-SILENT", "red"),
    ]
    stored = await query(target, f"SELECT loc_id, coverage FROM {target.table('temperature')} WHERE loc_id LIKE :p ORDER BY loc_id", p=f"{p}%")
    assert stored.rows() == [(f"{p}-DEF", round(60 / 360, 4)), (f"{p}-FULL", 1.0), (f"{p}-HALF", 0.5)]
    # the plant-health artifact: worst first (SILENT red, then the orange ones by coverage), FULL last, OFF absent
    markdown = await health_artifact()
    table = [line for line in markdown.splitlines() if line.startswith(f"| {p}")]
    # above it, the open alarms: one per silent or short location (an episode, not an hour)
    # and the pictures, inline PNGs: the coverage grid and the limits charts
    images = re.findall(r"!\[([a-z ]+)\]\(data:image/png;base64,([A-Za-z0-9+/=]+)\)", markdown)
    assert [alt for alt, _ in images] == ["coverage grid", "limits charts"]
    assert all(base64.b64decode(data)[:8] == b"\x89PNG\r\n\x1a\n" for _, data in images)
    alarms = sorted(line.split(" | ")[1:4] for line in markdown.splitlines() if f" | {p}-" in line and not line.startswith(f"| {p}"))
    assert alarms == [[f"{p}-DEF", "coverage", "orange"], [f"{p}-HALF", "coverage", "orange"], [f"{p}-SILENT", "coverage", "red"]]
    assert [line.split(" | ")[0].removeprefix("| ") for line in table] == [f"{p}-SILENT", f"{p}-DEF", f"{p}-HALF", f"{p}-FULL"]
    assert "| red |" in table[0] and "| 0% |" in table[0] and "| 50% |" in table[2] and "| 100% |" in table[3]

    # the late readings arrive: HALF's second half-hour, and SILENT's first 20 minutes
    await store.insert_raw(source.db, pl.concat([every(f"{p}-HALF", range(30, 60, 5)), every(f"{p}-SILENT", range(0, 20, 5))]))
    later = await run_hour(source, target)
    assert await coverage_of(target, p) == [
        (f"{p}-DEF", "orange", round(60 / 360, 4), "open"),
        (f"{p}-HALF", "orange", 0.5, "resolved"),
        (f"{p}-SILENT", "orange", round(4 / 12, 4), "open"),
        (f"{p}-SILENT", "red", 0.0, "resolved"),
    ]
    assert (later.totals["alerts_resolved"], later.totals["alerts_notified"]) == (2, 0)  # lower levels announce nothing


async def test_backfill_evaluates_alerts_and_a_deleted_hour_resolves_its_alert(alert_pair, monkeypatch):
    monkeypatch.setenv("MONTRG_NOTIFY_HOURS", "24")  # the default: 2024's hours are recorded quietly
    source, target = alert_pair
    await set_thresholds(target, [("red", 35.0)])
    p = unique("BF")
    await store.insert_raw(source.db, pl.concat([every(f"{p}-A", range(0, 60, 5), 36.0), every(f"{p}-B", range(0, 60, 5), 36.0)]))
    since = datetime.now(UTC)
    filled = await temperature_backfill(start="2024-03-01", end="2024-03-01", source_block=source.block, target_block=target.block)
    assert filled.totals["alerts_opened"] == 2 and filled.totals["alerts_notified"] == 0

    async with source.db.engine.begin() as conn:  # every reading of A in that hour was bad: deleted
        await conn.execute(text(f"DELETE FROM {source.table('temperature_raw')} WHERE loc_id = :loc"), {"loc": f"{p}-A"})
    again = await temperature_backfill(start="2024-03-01", end="2024-03-01", source_block=source.block, target_block=target.block)

    assert again.totals["removed"] == 1 and again.totals["alerts_resolved"] == 1
    open_alerts = await query(target, f"SELECT loc_id, status FROM {target.table('alerts')} WHERE loc_id LIKE :p ORDER BY loc_id", p=f"{p}%")
    assert open_alerts.rows() == [(f"{p}-A", "resolved"), (f"{p}-B", "open")]
    hours = await query(target, f"SELECT loc_id FROM {target.table('temperature')} WHERE loc_id LIKE :p", p=f"{p}%")
    assert hours.rows() == [(f"{p}-B",)]
    assert await breach_events(since, expect=1, timeout=3, prefix=f"montrg.location.{p}") == []
