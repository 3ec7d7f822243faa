"""sensor_collect against real pymodbus TCP servers on loopback: 50+ devices, three bad ones."""

from __future__ import annotations

import asyncio
import json
from dataclasses import asdict
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import insert

from flows import sensor_collect
from flows.ops.modbus_sim import SilentEndpoint, SimSensor, SimulatedEndpoint, free_port
from flows.store.modbus import Register
from flows.store.schema import sensors
from tests.helpers import make_db, query, unique

GOOD = 52
FLOAT_MAP = {
    "temperature": Register(1, "float32"),
    "humidity": Register(3, "float32"),
    "pcv_temperature": Register(5, "float32"),
}
# int16 with a scale, and a float32 with its words swapped
ODD_MAP = {
    "temperature": Register(1, "int16", 0.1),
    "humidity": Register(2, "float32", 1.0, "little"),
    "pcv_temperature": Register(4, "uint16", 0.01),
}


def values(i: int) -> dict[str, float]:
    return {"temperature": 20.0 + i / 4, "humidity": 40.0 + i / 2, "pcv_temperature": 23.0 + i / 8}


@pytest.fixture
async def floor(pg_url):
    """An IoT database whose sensors table describes a simulated floor, and the floor running."""
    sims = [SimSensor(i, ODD_MAP if i == GOOD else FLOAT_MAP, values(i)) for i in range(1, GOOD + 1)]
    endpoints = [await SimulatedEndpoint(sims[:30]).start(), await SimulatedEndpoint(sims[30:]).start()]
    silent = await SilentEndpoint().start()
    rows = [
        {"sensor_id": f"S{s.device_id:03d}", "loc_id": f"L{s.device_id:03d}", "host": "127.0.0.1",
         "port": endpoints[0 if s.device_id <= 30 else 1].port, "device_id": s.device_id, "is_active": True,
         "registers": json.dumps({m: asdict(r) for m, r in s.registers.items()})}
        for s in sims
    ]
    bad = [
        ("S-SILENT", silent.port, 1, FLOAT_MAP),  # never answers
        ("S-EXCEPTION", endpoints[0].port, 3, {"temperature": Register(500)}),  # illegal address
        ("S-REFUSED", free_port(), 1, FLOAT_MAP),  # nothing listens
    ]
    rows += [
        {"sensor_id": sid, "loc_id": f"L-{sid}", "host": "127.0.0.1", "port": port, "device_id": dev, "is_active": True,
         "registers": json.dumps({m: asdict(r) for m, r in regs.items()})}
        for sid, port, dev, regs in bad
    ]
    iot = await make_db(await pg_url(), unique("t-iot-"))
    async with iot.db.engine.begin() as conn:
        await conn.execute(insert(sensors), rows)
    try:
        yield iot
    finally:
        for ep in (*endpoints, silent):
            await ep.stop()
        await iot.db.dispose()


def soon(seconds: float = 2) -> datetime:
    """A window start far enough ahead that no cycle is skipped while the run starts up."""
    return datetime.now(UTC).replace(microsecond=0) + timedelta(seconds=seconds)


async def test_collects_exact_decoded_readings_and_survives_bad_devices(floor):
    report = await sensor_collect(
        interval_seconds=1, duration_seconds=3, timeout_seconds=0.5, window_start=soon(), iot_block=floor.block
    )

    stored = await query(floor, "SELECT loc_id, capture_dt, temperature, humidity, pcv_temperature FROM flet_montrg.temperature_raw")
    assert report.cycles == 3 and stored.height == 3 * GOOD == report.written
    assert stored["capture_dt"].n_unique() == 3  # one capture_dt per cycle
    for (loc, t, h, p) in stored.select("loc_id", "temperature", "humidity", "pcv_temperature").unique().rows():
        i = int(loc[1:])
        assert (t, h, p) == pytest.approx(tuple(values(i).values()), abs=1e-4), loc
    assert dict(report.failures) == {"S-SILENT": 3, "S-EXCEPTION": 3, "S-REFUSED": 3}


async def test_overlapping_runs_store_each_reading_once(floor):
    """Two runs of the same window (a retried or duplicated scheduled run) poll the same cycles."""
    args = dict(interval_seconds=1, duration_seconds=2, timeout_seconds=0.9, window_start=soon(3), source_block=floor.block)
    first, second = await asyncio.gather(sensor_collect(**args), sensor_collect(**args))

    stored = await query(floor, "SELECT COUNT(*) AS n, COUNT(DISTINCT capture_dt) AS cycles FROM flet_montrg.temperature_raw")
    n, cycles = stored.row(0)
    assert cycles == 2 and n == 2 * GOOD
    assert first.readings == second.readings == 2 * GOOD
    assert first.written + second.written == n  # what one run wrote, the other skipped


async def test_fails_only_when_no_sensor_answers(pg_url):
    iot = await make_db(await pg_url(), unique("t-iot-"))
    try:
        async with iot.db.engine.begin() as conn:
            await conn.execute(insert(sensors).values(
                sensor_id="S-REFUSED", loc_id="L1", host="127.0.0.1", port=free_port(), device_id=1, is_active=True,
                registers=json.dumps({"temperature": {"address": 1, "type": "float32"}}),
            ))
        with pytest.raises(RuntimeError, match="no sensor answered in 2 cycles"):
            await sensor_collect(
                interval_seconds=0.5, duration_seconds=1, timeout_seconds=0.2, window_start=soon(), source_block=iot.block
            )
    finally:
        await iot.db.dispose()


async def test_a_window_far_from_now_is_refused_before_any_polling():
    with pytest.raises(ValueError, match=r"window_start=2030-01-01T00:00:00 is more than a day from now"):
        await sensor_collect(window_start=datetime(2030, 1, 1), source_block="nope")


async def test_a_window_already_past_fails_naming_it(floor):
    """A run that starts after its whole window (the worker was down): no reading can be taken for
    those times, and the run says so instead of 'no sensor answered'."""
    gone = datetime.now(UTC).replace(microsecond=0) - timedelta(seconds=30)
    with pytest.raises(RuntimeError, match=r"started after its whole window \(.*\) had passed: no cycle could be polled, so the window's 3 cycles"):
        await sensor_collect(interval_seconds=1, duration_seconds=3, timeout_seconds=0.5, window_start=gone, iot_block=floor.block)
    assert (await query(floor, "SELECT COUNT(*) AS n FROM flet_montrg.temperature_raw"))["n"][0] == 0


@pytest.fixture
def private_cluster():
    """A PostgreSQL server of this test's own (the machine's shared one is never stopped)."""
    import os
    import tempfile
    from pathlib import Path

    from deployments.faults import PrivateCluster

    folder = Path(tempfile.mkdtemp(prefix="montrg-pg-"))
    os.chmod(folder, 0o755)  # the postgres user runs the server when the tests run as root
    cluster = PrivateCluster(folder / "pg")
    cluster.create()
    try:
        yield cluster
    finally:
        cluster.destroy()
        folder.rmdir()


async def test_a_database_restart_mid_run_is_waited_out_and_every_polled_cycle_is_stored(private_cluster):
    """The IoT database stops (fast shutdown) after the first write and starts again 2 s later:
    the writes that found it down are retried, and every reading taken is stored exactly once;
    cycles whose time passed while a write waited are counted as missed, never stamped late."""
    from sqlalchemy import text
    from sqlalchemy.ext.asyncio import create_async_engine

    admin = create_async_engine(private_cluster.url().replace("postgresql://", "postgresql+asyncpg://"), isolation_level="AUTOCOMMIT")
    async with admin.connect() as conn:
        await conn.execute(text("CREATE DATABASE iot"))
    await admin.dispose()
    sims = [SimSensor(i, FLOAT_MAP, values(i)) for i in range(1, 6)]
    endpoint = await SimulatedEndpoint(sims).start()
    iot = await make_db(private_cluster.url("iot"), unique("t-iot-"))
    async with iot.db.engine.begin() as conn:
        await conn.execute(insert(sensors), [
            {"sensor_id": f"S{s.device_id}", "loc_id": f"L{s.device_id}", "host": "127.0.0.1", "port": endpoint.port,
             "device_id": s.device_id, "is_active": True, "registers": json.dumps({m: asdict(r) for m, r in FLOAT_MAP.items()})}
            for s in sims
        ])
    run = asyncio.create_task(sensor_collect(
        interval_seconds=1, duration_seconds=10, timeout_seconds=0.5, flush_every_cycles=1, window_start=soon(3), iot_block=iot.block,
    ))
    try:
        while (await query(iot, "SELECT COUNT(*) AS n FROM flet_montrg.temperature_raw"))["n"][0] == 0:  # the first write is in
            await asyncio.sleep(0.1)
        await iot.db.dispose()
        await asyncio.to_thread(private_cluster.stop, "fast")
        await asyncio.sleep(2)  # the outage's length, not an ordering
        await asyncio.to_thread(private_cluster.start)
        report = await run
        stored = await query(iot, "SELECT COUNT(*) AS n, COUNT(DISTINCT capture_dt) AS cycles FROM flet_montrg.temperature_raw")
    finally:
        await endpoint.stop()
        await iot.db.dispose()
    assert report.cycles + report.missed == 10
    assert stored.row(0) == (report.readings, report.cycles) and report.readings == 5 * report.cycles == report.written
