"""Benchmarks of the raw ingest, through the flows, with their references measured in the same run.

    python bench/raw_ingest.py raw-etl      # temperature_raw_etl loading 1M device rows into PostgreSQL
    python bench/raw_ingest.py collect      # one sensor_collect cycle against 500 simulated devices

raw-etl prints the flow's rows/s next to a plain COPY of the same (typed) rows into an identical,
indexed temperature_raw (the floor for any loader; asyncpg's row encoder and the flow's column-wise
one, the faster counts), median of 3, each flow run in a fresh process on a running Prefect server.
collect prints the time of one polling cycle.
"""

from __future__ import annotations

import asyncio
import json
import os
import statistics
import subprocess
import sys
import time
from dataclasses import asdict
from datetime import datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import create_databases, import_startup_modules, init_block, peak_rss_mb, start_server  # noqa: E402

ROWS = int(os.environ.get("MONTRG_BENCH_RAW_ROWS", "1000000"))
REPEATS = int(os.environ.get("MONTRG_BENCH_REPEATS", "3"))
LOCATIONS = 200


async def raw_etl() -> None:
    import polars as pl
    from sqlalchemy import MetaData, insert, text

    from flows.core import simulate
    from flows.core.schema import device_table, sensors

    await create_databases(["montrg_bench_raw_iot", "montrg_bench_raw_ref", "montrg_bench_device"])
    iot = await init_block("montrg-bench-raw-iot", "montrg_bench_raw_iot")
    ref = await init_block("montrg-bench-raw-ref", "montrg_bench_raw_ref")
    device = await init_block("montrg-bench-device", "montrg_bench_device")
    table = device_table("dbo.temperature", MetaData())
    async with device.engine.begin() as conn:
        await conn.execute(text("CREATE SCHEMA dbo"))
        await conn.run_sync(table.metadata.create_all)
        # the incremental read is WHERE upload_dt > :watermark ORDER BY upload_dt (see README)
        await conn.execute(text("CREATE INDEX ix_temperature_upload_dt ON dbo.temperature (upload_dt)"))
    async with iot.engine.begin() as conn:
        await conn.execute(insert(sensors), [{"sensor_id": f"S{i + 1:03d}", "loc_id": f"LOC{i + 1:03d}", "is_active": True} for i in range(LOCATIONS)])
    start = datetime(2024, 2, 1)
    raw = simulate.readings(LOCATIONS, start, start + timedelta(seconds=10 * -(-ROWS // LOCATIONS)))
    raw = raw.head(ROWS)
    device_rows = raw.select(
        pl.col("loc_id").str.replace("LOC", "S").alias("sensor_id"), pl.lit("GW1").alias("device_id"), "capture_dt",
        *(pl.col(m).cast(pl.String).alias(t) for m, t in (("temperature", "t1"), ("humidity", "t2"), ("pcv_temperature", "t3"))),
        pl.lit(None, pl.String).alias("t4"), pl.lit(None, pl.String).alias("t5"), pl.lit(None, pl.String).alias("t6"),
        pl.lit("Y").alias("upload_yn"), (pl.col("capture_dt") + pl.duration(seconds=30)).alias("upload_dt"),
    )
    async with device.engine.begin() as conn:
        pg = (await conn.get_raw_connection()).driver_connection
        await pg.copy_records_to_table("temperature", schema_name="dbo", records=device_rows.iter_rows(), columns=device_rows.columns)
        await pg.execute("ANALYZE dbo.temperature")  # what autovacuum does to a table in service
    await device.dispose()

    # the references: plain COPY of the same typed rows into an identical, indexed temperature_raw,
    # with asyncpg's row-by-row encoder and with the flow's column-wise one; the faster one counts
    from flows.core.io.sql import pgcopy
    from flows.core.schema import temperature_raw

    async def plain_copy(column_wise: bool) -> float:
        async with ref.engine.begin() as conn:
            await conn.execute(text("TRUNCATE flet_montrg.temperature_raw"))
        started = time.perf_counter()
        async with ref.engine.begin() as conn:
            pg = (await conn.get_raw_connection()).driver_connection
            if column_wise:
                data = pgcopy.encode(temperature_raw, raw)
                await pg.copy_to_table("temperature_raw", schema_name="flet_montrg", source=data, columns=raw.columns, format="binary")
            else:
                await pg.copy_records_to_table("temperature_raw", schema_name="flet_montrg", records=raw.iter_rows(), columns=raw.columns)
        return time.perf_counter() - started

    runs: dict[str, list[float]] = {"records": [], "columns": [], "flow": []}
    ratios, flow_rss = [], []
    for rep in range(REPEATS):
        runs["records"].append(await plain_copy(column_wise=False))
        runs["columns"].append(await plain_copy(column_wise=True))
        flow = flow_in_a_fresh_process()
        runs["flow"].append(flow["seconds"])
        flow_rss.append(flow["rss_mb"])
        ratios.append(min(runs["records"][-1], runs["columns"][-1]) / flow["seconds"])
        print(f"  rep {rep + 1}: COPY {runs['records'][-1]:.2f} s / {runs['columns'][-1]:.2f} s, flow {flow['seconds']:.2f} s "
              f"({flow['loaded']:,} loaded, {flow['stored']:,} stored)", flush=True)
    await ref.dispose()
    await iot.dispose()
    print(f"\ntemperature_raw_etl: {ROWS:,} device rows (text values) -> PostgreSQL temperature_raw, median of {REPEATS}")
    print(f"{'way':<58}{'s':>8}{'rows/s':>12}")
    names = {"records": "plain COPY, asyncpg row encoder (reference)", "columns": "plain COPY, column-wise encoder (reference)",
             "flow": "temperature_raw_etl flow (read, validate, load)"}
    for way, seconds in runs.items():
        median = statistics.median(seconds)
        print(f"{names[way]:<58}{median:>8.2f}{ROWS / median:>12,.0f}")
    print(f"flow speed / the faster COPY's, per repetition: {statistics.median(ratios):.2f}x (median; "
          f"{', '.join(f'{r:.2f}' for r in ratios)}); the flow's process: peak RSS {max(flow_rss):.0f} MB")


def flow_in_a_fresh_process() -> dict:
    """One timed temperature_raw_etl run in a new process, as a worker runs it; imports are start-up."""
    done = subprocess.run([sys.executable, __file__, "raw-etl-flow"], capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"the flow run failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


async def raw_etl_flow() -> None:
    """The IoT tables emptied, then one timed run; prints JSON (seconds, loaded, stored, peak RSS)."""
    from sqlalchemy import text

    import_startup_modules()  # start-up, not the run

    from blocks import load_database
    from flows import temperature_raw_etl

    iot = await load_database("montrg-bench-raw-iot")
    async with iot.engine.begin() as conn:
        await conn.execute(text("TRUNCATE flet_montrg.temperature_raw, flet_montrg.temperature_raw_reject, flet_montrg.etl_watermark"))
    started = time.perf_counter()
    reports = await temperature_raw_etl(device_block="montrg-bench-device", device_table="dbo.temperature", source_block="montrg-bench-raw-iot")
    seconds = time.perf_counter() - started
    async with iot.engine.connect() as conn:
        stored = (await conn.execute(text("SELECT count(*) FROM flet_montrg.temperature_raw"))).scalar_one()
    await iot.dispose()
    print(json.dumps({"seconds": seconds, "loaded": sum(r.loaded for r in reports), "stored": stored, "rss_mb": peak_rss_mb()}))


async def collect(devices: int = 500) -> None:
    from sqlalchemy import insert

    from flows import sensor_collect
    from flows.core.io.modbus import Register
    from flows.core.io.modbus_sim import DEVICES_PER_ENDPOINT, SimSensor, SimulatedEndpoint
    from flows.core.schema import sensors

    regs = {"temperature": Register(1), "humidity": Register(3), "pcv_temperature": Register(5)}
    sims = [SimSensor(i % DEVICES_PER_ENDPOINT + 1, regs, {"temperature": 21.5, "humidity": 48.0, "pcv_temperature": 24.0}) for i in range(devices)]
    groups = [sims[i : i + DEVICES_PER_ENDPOINT] for i in range(0, devices, DEVICES_PER_ENDPOINT)]
    endpoints = [await SimulatedEndpoint(g).start() for g in groups]
    await create_databases(["montrg_bench_collect"])
    iot = await init_block("montrg-bench-collect", "montrg_bench_collect")
    async with iot.engine.begin() as conn:
        await conn.execute(insert(sensors), [
            {"sensor_id": f"S{n:04d}", "loc_id": f"LOC{n:04d}", "host": "127.0.0.1", "port": ep.port,
             "device_id": s.device_id, "registers": json.dumps({m: asdict(r) for m, r in regs.items()}), "is_active": True}
            for n, (ep, s) in enumerate(((ep, s) for ep, g in zip(endpoints, groups) for s in g))
        ])
    await iot.dispose()
    report = await sensor_collect(interval_seconds=1, duration_seconds=5, timeout_seconds=0.9, source_block="montrg-bench-collect")
    for ep in endpoints:
        await ep.stop()
    cycles = report.seconds_per_cycle
    print(f"\nsensor_collect: {devices} simulated devices on {len(endpoints)} loopback endpoints, {len(cycles)} cycles through the flow")
    print(f"readings per cycle: {report.readings / max(report.cycles, 1):.0f} of {devices}; failures: {sum(report.failures.values())}")
    print(f"cycle time: first {cycles[0]:.3f} s (connects), median {statistics.median(cycles[1:] or cycles):.3f} s, max {max(cycles):.3f} s")


if __name__ == "__main__":
    from flows.core.settings import apply_prefect_defaults

    apply_prefect_defaults()
    command = sys.argv[1] if len(sys.argv) > 1 else ""
    commands = {"raw-etl": raw_etl, "raw-etl-flow": raw_etl_flow, "collect": collect}
    if command not in commands:
        sys.exit(__doc__)
    server = start_server(env := {**os.environ, "PREFECT_LOGGING_LEVEL": "WARNING"}) if command != "raw-etl-flow" else None
    os.environ.update(env if command != "raw-etl-flow" else {})
    try:
        asyncio.run(commands[command]())
    finally:
        if server is not None:
            server.terminate()
            server.wait(30)
