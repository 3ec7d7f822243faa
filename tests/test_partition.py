"""The exact partition, through the raw ETL for real (SQLite databases, a real Prefect server):
whatever the device rows - NULL upload times, upload times tied across batch boundaries, a batch
refused by the database halfway, the repeated hour of a daylight-saving change - and whatever the
overlap setting, after a rerun every device row is loaded or rejected, never both, never neither."""

from __future__ import annotations

import asyncio
import json
from datetime import datetime, timedelta

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from sqlalchemy import MetaData, insert, text

from flows import temperature_raw_etl
from flows.store.schema import device_table, sensors
from tests.helpers import make_db, query, unique

REPEATED = datetime(2024, 10, 27, 2)  # Europe/Berlin: 02:00-03:00 happens twice
REFUSED = "66.5"  # the IoT database refuses it during the first run (a trigger), not the second

rows_strategy = st.lists(
    st.tuples(
        st.sampled_from(["S1", "S2", "S9"]),  # S9: unknown sensor
        st.integers(-20, 80),  # capture minute from 01:40; 02:00-02:59 is the repeated hour
        st.sampled_from(["20.5", "21", "abc", "", REFUSED]),
        st.one_of(st.none(), st.integers(0, 5)),  # upload: NULL, or one of few minutes (ties)
    ),
    min_size=1, max_size=25,
)


def expected_partition(rows, raw: dict, rejected: dict) -> list[str]:
    """Problems: each row must be exactly one of rejected (with a reason) or loaded."""
    problems = []
    loc = {"S1": "L1", "S2": "L2"}
    for i, (sensor, minute, value, upload) in enumerate(rows):
        rid = f"R{i}"
        valid = sensor in loc and upload is not None and value not in ("abc", "")
        key = (loc.get(sensor), REPEATED + timedelta(minutes=minute - 20))
        if rid in rejected:
            if not rejected[rid]:
                problems.append(f"{rid} rejected without a reason")
            if valid and not rejected[rid].startswith("repeated hour"):
                problems.append(f"{rid} valid but rejected: {rejected[rid]}")
            continue
        if not valid:
            problems.append(f"{rid} invalid {rows[i]} and not rejected")
            continue
        stored = raw.get(key)
        in_repeated_hour = 20 <= minute < 80  # two readings of one naive time there are two readings, not a correction
        superseded = not in_repeated_hour and any(
            f"R{j}" not in rejected and r[0] == sensor and r[1] == minute and r[3] is not None and r[3] >= upload
            and float(r[2]) == stored for j, r in enumerate(rows) if r[2] not in ("abc", "")
        )
        if stored != float(value) and not superseded:
            problems.append(f"{rid} {rows[i]} neither loaded (stored {stored}) nor rejected")
    return problems


@example(  # upload times tied across the boundary of a refused batch, overlap 0: the rerun must not skip them
    rows=[("S1", 0, "20.5", 0), ("S1", 1, "21", 1), ("S1", 2, "21", 1), ("S1", 3, REFUSED, 1)], overlap=0, batch_rows=2,
)
@example(  # two readings of 02:30 (both passes of the repeated hour), one without an upload time
    rows=[("S1", 50, "20.5", 0), ("S1", 50, "21", 3), ("S2", 50, "21", None)], overlap=30, batch_rows=2,
)
@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(rows=rows_strategy, overlap=st.sampled_from([0, 1, 30]), batch_rows=st.sampled_from([2, 3, 50]))
def test_every_device_row_ends_loaded_xor_rejected(sqlite_url, monkeypatch, rows, overlap, batch_rows):
    monkeypatch.setenv("MONTRG_PLANT_TZ", "Europe/Berlin")
    asyncio.run(_check(sqlite_url, rows, overlap, batch_rows))  # a loop per example, as each flow run gets


async def _check(sqlite_url, rows, overlap, batch_rows):
    iot = await make_db(sqlite_url(), unique("t-iot-"))
    device = await make_db(sqlite_url(), unique("t-dev-"), init=False)
    table = device_table("gw_temperature", MetaData())
    base = REPEATED - timedelta(minutes=20)
    records = [
        {"sensor_id": sensor, "device_id": f"R{i}", "capture_dt": base + timedelta(minutes=minute), "t1": value, "t2": "50",
         "t3": "25", "t4": None, "t5": None, "t6": None, "upload_yn": "Y",
         "upload_dt": None if upload is None else datetime(2024, 10, 27, 5) + timedelta(minutes=upload)}
        for i, (sensor, minute, value, upload) in enumerate(rows)
    ]
    try:
        async with device.db.engine.begin() as conn:
            await conn.run_sync(table.metadata.create_all)
            await conn.execute(insert(table), records)
        async with iot.db.engine.begin() as conn:
            await conn.execute(insert(sensors), [{"sensor_id": s, "loc_id": loc, "is_active": True} for s, loc in (("S1", "L1"), ("S2", "L2"))])
            await conn.execute(text(
                f"CREATE TRIGGER refuse BEFORE INSERT ON temperature_raw WHEN NEW.temperature = {REFUSED} "
                "BEGIN SELECT RAISE(ABORT, 'refused by test'); END"
            ))
        params = dict(device_block=device.block, device_table=table.fullname, iot_block=iot.block,
                      overlap_minutes=overlap, batch_rows=batch_rows)
        try:
            await temperature_raw_etl(**params)
        except Exception as exc:  # noqa: BLE001 - the injected failure, when a refused value is in the data
            assert "refused by test" in str(exc), exc
        async with iot.db.engine.begin() as conn:
            await conn.execute(text("DROP TRIGGER refuse"))
        await temperature_raw_etl(**params)
        raw = {(r[0], r[1]): r[2] for r in (await query(iot, "SELECT loc_id, capture_dt, temperature FROM temperature_raw")).rows()}
        rejected: dict[str, str] = {}
        for raw_values, reason in (await query(iot, "SELECT raw_values, reason FROM temperature_raw_reject")).rows():
            rid = json.loads(raw_values)["device_id"]
            assert rid not in rejected, f"{rid} rejected twice"
            rejected[rid] = reason
    finally:
        await iot.db.dispose()
        await device.db.dispose()
    raw = {(loc, dt if isinstance(dt, datetime) else datetime.fromisoformat(dt)): t for (loc, dt), t in raw.items()}
    assert not expected_partition(rows, raw, rejected)
