"""Daylight saving in a plant zone that has it (Europe/Berlin, 2024-10-27: 02:00-03:00 happens
twice). Plant-local naive capture_dt is the seed's schema: both passes' readings must end loaded
or kept aside with the reason, never silently merged."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import polars as pl
import pytest
from sqlalchemy import MetaData, insert, text

from flows import temperature_raw_etl
from flows.pipelines.sensor_collect import flush, second_pass
from flows.store.schema import device_table, sensors
from tests.helpers import make_db, query, unique

BERLIN = ZoneInfo("Europe/Berlin")


@pytest.fixture
def berlin(monkeypatch):
    monkeypatch.setenv("MONTRG_PLANT_TZ", "Europe/Berlin")


def test_the_second_pass_of_the_repeated_hour_is_recognised():
    first, second = datetime(2024, 10, 27, 0, 30, tzinfo=UTC), datetime(2024, 10, 27, 1, 30, tzinfo=UTC)
    assert [second_pass(t.timestamp(), BERLIN) for t in (first, second)] == [False, True]
    assert not second_pass(second.timestamp(), ZoneInfo("Asia/Seoul"))


async def test_sensor_collect_keeps_the_second_pass_aside_with_its_reason(berlin, sqlite_url):
    iot = await make_db(sqlite_url(), unique("t-iot-"))
    naive = datetime(2024, 10, 27, 2, 30)
    buffer = [
        {"sensor_id": "S1", "device_id": "1", "capture_dt": naive, "t1": value, "t2": "50", "t3": "25",
         "t4": None, "t5": None, "t6": None, "upload_dt": naive, "second_pass": again}
        for value, again in (("20.5", False), ("19.5", True))
    ]
    try:
        result = await flush.fn(iot.db, buffer, pl.DataFrame({"sensor_id": ["S1"], "loc_id": ["L1"]}), 1)
        stored = await query(iot, "SELECT loc_id, temperature FROM temperature_raw")
        rejects = await query(iot, "SELECT sensor_id, reason, raw_values FROM temperature_raw_reject")
    finally:
        await iot.db.dispose()
    assert (result.written, result.rejected) == (1, 1)
    assert stored.rows() == [("L1", 20.5)]
    assert rejects["reason"][0].startswith("repeated hour of the daylight-saving change: 2024-10-27 02:30:00")
    assert '"t1": "19.5"' in rejects["raw_values"][0]


async def test_raw_etl_loads_the_first_pass_and_keeps_the_second_aside_across_batches(berlin, pg_url):
    """240 gateway rows, one a minute from 01:00 to 04:00 local wall time: 02:00-02:59 twice.
    180 distinct naive times are loaded (the first pass in the repeated hour), the 60 others are
    rejects naming the repeated hour; a rerun changes nothing."""
    iot = await make_db(await pg_url(), unique("t-iot-"))
    device = await make_db(await pg_url(), unique("t-dev-"), init=False)
    table = device_table("gw_temperature", MetaData())
    start = datetime(2024, 10, 26, 23, 0, tzinfo=UTC)  # 01:00 CEST
    rows = []
    for minute in range(240):
        instant = start + timedelta(minutes=minute)
        naive = instant.astimezone(BERLIN).replace(tzinfo=None)
        rows.append({"sensor_id": "S1", "device_id": "GW", "capture_dt": naive, "t1": f"{20 + minute / 100:.2f}", "t2": "50",
                     "t3": "25", "t4": None, "t5": None, "t6": None, "upload_yn": "Y",
                     "upload_dt": (instant + timedelta(seconds=20)).replace(tzinfo=None)})
    try:
        async with device.db.engine.begin() as conn:
            await conn.run_sync(table.metadata.create_all)
            await conn.execute(insert(table), rows)
        async with iot.db.engine.begin() as conn:
            await conn.execute(insert(sensors), [{"sensor_id": "S1", "loc_id": "L1", "is_active": True}])
        for _ in range(2):
            await temperature_raw_etl(device_block=device.block, device_table=table.fullname, source_block=iot.block, batch_rows=50)
        stored = await query(iot, f"SELECT capture_dt, temperature FROM {iot.table('temperature_raw')} ORDER BY capture_dt")
        rejects = await query(iot, f"SELECT capture_dt, reason FROM {iot.table('temperature_raw_reject')} ORDER BY capture_dt")
        async with iot.db.engine.connect() as conn:
            repeated = (await conn.execute(text(
                f"SELECT count(*) FROM {iot.table('temperature_raw')} WHERE capture_dt >= '2024-10-27 02:00' AND capture_dt < '2024-10-27 03:00'"
            ))).scalar()
    finally:
        await iot.db.dispose()
        await device.db.dispose()
    assert stored.height == 180 and rejects.height == 60 and stored.height + rejects.height == len(rows)
    assert repeated == 60
    first_pass = {r["capture_dt"]: float(r["t1"]) for r in rows[60:120]}  # 02:00-02:59 CEST
    assert {dt: t for dt, t in stored.rows() if dt in first_pass} == first_pass
    assert all(reason.startswith("repeated hour of the daylight-saving change") for reason in rejects["reason"])
