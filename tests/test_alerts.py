"""Threshold alerts after temperature_etl: exact alerts, no duplicates, resolution, Prefect events."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import polars as pl
import pytest
from sqlalchemy import insert, text

from flows import temperature_etl
from flows.core.io import sql
from flows.core.schema import thresholds
from tests.helpers import query

HOUR = datetime(2024, 3, 1, 10)


@pytest.fixture(params=["postgresql->postgresql", "postgresql->mariadb"])
async def alert_pair(request, db_pair):
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
    await sql.insert_raw(source.db, readings({"COOL": [20.0, 21.0], "HOT": [25.0, 33.0], "HOTTER": [25.0, 36.0], "HOT2": [36.0]}))
    since = datetime.now(UTC)  # events are stamped when emitted, on this machine's clock

    first = await run_hour(source, target)
    again = await run_hour(source, target)

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
    events = await breach_events(since, expect=4)
    assert sorted(e.resource.id for e in events) == [
        "montrg.location.HOT", "montrg.location.HOT2", "montrg.location.HOTTER", "montrg.location.HOTTER"
    ]
    assert {e.payload["level"] for e in events if e.resource.id.endswith("HOTTER")} == {"yellow", "red"}


async def breach_events(since: datetime, expect: int, timeout: float = 20.0):
    """The montrg.threshold.breached events the test Prefect server received since `since`."""
    from prefect.client.orchestration import get_client
    from prefect.events.filters import EventFilter, EventNameFilter, EventOccurredFilter

    flt = EventFilter(occurred=EventOccurredFilter(since=since), event=EventNameFilter(name=["montrg.threshold.breached"]))
    deadline = asyncio.get_running_loop().time() + timeout
    async with get_client() as client:
        while True:
            page = await client.read_events(filter=flt, limit=50)
            if len(page.events) >= expect or asyncio.get_running_loop().time() > deadline:
                return page.events
            await asyncio.sleep(0.5)
