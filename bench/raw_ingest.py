"""Benchmarks of the raw ingest, through the flows, with their references measured in the same run.

    python bench/raw_ingest.py raw-etl      # temperature_raw_etl loading 1M device rows into PostgreSQL
    python bench/raw_ingest.py collect      # one sensor_collect cycle against 500 simulated devices

raw-etl measures, median of 3, each run a fresh process timed from outside from spawn to exit
(imports included), the flow on a running Prefect server:
  empty table   temperature_raw_etl loading 1M device rows into an empty temperature_raw, against
                a plain COPY of the same typed rows, in arrival order, into an identical, indexed
                table (`psql \copy` of a binary COPY file made beforehand: the floor for any loader)
  steady state  with those 1M rows loaded, 100k new device rows uploaded after the watermark (the
                run re-reads the last `overlap_minutes` too) plus 10k later uploads of existing
                readings (corrected values): the flow's incremental run, against a plain COPY of
                the same 100k new rows into the same 1M-row table
collect prints the time of one polling cycle.
"""

from __future__ import annotations

import asyncio
import json
import os
import statistics
import sys
import time
from dataclasses import asdict
from datetime import datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import PG, create_databases, init_block, json_child, peak_rss_mb, start_server, timed  # noqa: E402

ROWS = int(os.environ.get("MONTRG_BENCH_RAW_ROWS", "1000000"))
NEW_ROWS, REUPLOADS = ROWS // 10, ROWS // 100
DATA = Path(__file__).resolve().parents[1] / "bench-data"
RAW_COLUMNS = ("loc_id", "capture_dt", "temperature", "humidity", "pcv_temperature")
REPEATS = int(os.environ.get("MONTRG_BENCH_REPEATS", "3"))
LOCATIONS = 200
NO_ROWS_TABLE = "dbo.temperature_none"


async def raw_etl() -> None:
    import polars as pl
    from sqlalchemy import MetaData, insert, text

    from flows.ops import simulate
    from flows.store.schema import device_table, sensors

    await create_databases(["montrg_bench_raw_iot", "montrg_bench_raw_ref", "montrg_bench_device"])
    iot = await init_block("montrg-bench-raw-iot", "montrg_bench_raw_iot")
    ref = await init_block("montrg-bench-raw-ref", "montrg_bench_raw_ref")
    device = await init_block("montrg-bench-device", "montrg_bench_device")
    table = device_table("dbo.temperature", MetaData())
    nothing = device_table(NO_ROWS_TABLE, MetaData())  # the no-rows case: a device table that stays empty
    async with device.engine.begin() as conn:
        await conn.execute(text("CREATE SCHEMA dbo"))
        await conn.run_sync(table.metadata.create_all)
        await conn.run_sync(nothing.metadata.create_all)
        # the incremental read is WHERE upload_dt > :watermark ORDER BY upload_dt (see README)
        await conn.execute(text("CREATE INDEX ix_temperature_upload_dt ON dbo.temperature (upload_dt)"))
    async with iot.engine.begin() as conn:
        await conn.execute(insert(sensors), [{"sensor_id": f"S{i + 1:03d}", "loc_id": f"LOC{i + 1:03d}", "is_active": True} for i in range(LOCATIONS)])
    start = datetime(2024, 2, 1)
    raw = simulate.readings(LOCATIONS, start, start + timedelta(seconds=10 * -(-ROWS // LOCATIONS)))
    raw = raw.head(ROWS)
    device_rows = as_device_rows(raw, pl.col("capture_dt") + pl.duration(seconds=30))
    async with device.engine.begin() as conn:
        pg = (await conn.get_raw_connection()).driver_connection
        await pg.copy_records_to_table("temperature", schema_name="dbo", records=device_rows.iter_rows(), columns=device_rows.columns)
        await pg.execute("ANALYZE dbo.temperature")  # what autovacuum does to a table in service
    await device.dispose()

    # the references' input: binary COPY files of the typed rows, made before any clock starts
    from flows.store import pgcopy
    from flows.store.schema import temperature_raw

    DATA.mkdir(exist_ok=True)
    everything, new_file = DATA / "raw-all.bin", DATA / "raw-new.bin"
    # in arrival order (time, then location), as the devices upload them and the flow receives them:
    # the generator's location-major order is the primary key's, which PostgreSQL loads about 20%
    # faster (1M rows: 2.06 s against 2.52 s), a layout no plant's uploads have
    arrival = ["capture_dt", "loc_id"]
    everything.write_bytes(pgcopy.encode(temperature_raw, raw.sort(arrival).select(RAW_COLUMNS)))

    runs: dict[str, list[float]] = {"copy": [], "flow": [], "flow_work": []}
    ratios, flow_rss = [], []
    no_rows: dict[str, list[float]] = {"flow": [], "flow_work": [], "rss": []}
    for rep in range(REPEATS):
        flow = flow_in_a_fresh_process(NO_ROWS_TABLE)
        assert flow["read"] == 0, flow
        no_rows["flow"].append(flow["whole"])
        no_rows["flow_work"].append(flow["seconds"])
        no_rows["rss"].append(flow["rss_mb"])
        print(f"  no rows rep {rep + 1}: flow {flow['whole']:.2f} s (work {flow['seconds']:.2f} s, peak RSS {flow['rss_mb']:.0f} MB)", flush=True)
        await truncate(ref, "temperature_raw")
        runs["copy"].append(psql_copy("montrg_bench_raw_ref", everything))
        await truncate(iot, "temperature_raw", "temperature_raw_reject", "etl_watermark")
        flow = flow_in_a_fresh_process()
        runs["flow"].append(flow["whole"])
        runs["flow_work"].append(flow["seconds"])
        flow_rss.append(flow["rss_mb"])
        ratios.append(runs["copy"][-1] / flow["whole"])
        print(f"  empty table rep {rep + 1}: COPY {runs['copy'][-1]:.2f} s, flow {flow['whole']:.2f} s "
              f"(work {flow['seconds']:.2f} s; {flow['loaded']:,} loaded, {flow['stored']:,} stored)", flush=True)

    # steady state: the 1M rows loaded (the last run above), then new uploads after the watermark
    last = raw["capture_dt"].max()
    fresh = simulate.readings(LOCATIONS, last + timedelta(seconds=10), last + timedelta(seconds=10 * (NEW_ROWS // LOCATIONS + 1)),
                              seed=7).head(NEW_ROWS)
    corrected = raw.gather_every(len(raw) // REUPLOADS).head(REUPLOADS).with_columns(pl.col("temperature") + 0.5)
    upload = last + timedelta(seconds=40)  # just after the last loaded upload (capture + 30 s)
    extra = pl.concat([
        as_device_rows(fresh, pl.col("capture_dt") + pl.duration(seconds=30)),
        as_device_rows(corrected, pl.lit(upload) + pl.duration(milliseconds=pl.int_range(pl.len()))),
    ])
    device = await init_block("montrg-bench-device", "montrg_bench_device")
    async with device.engine.begin() as conn:
        pg = (await conn.get_raw_connection()).driver_connection
        await pg.copy_records_to_table("temperature", schema_name="dbo", records=extra.iter_rows(), columns=extra.columns)
        await pg.execute("ANALYZE dbo.temperature")
    await device.dispose()
    new_file.write_bytes(pgcopy.encode(temperature_raw, fresh.sort(arrival).select(RAW_COLUMNS)))
    saved = await snapshot_watermarks(iot)
    steady: dict[str, list[float]] = {"copy": [], "flow": [], "flow_work": []}
    steady_ratios = []
    for rep in range(REPEATS):
        await truncate(ref, "temperature_raw")  # the same 1M rows, then the timed COPY of the new ones
        psql_copy("montrg_bench_raw_ref", everything)
        steady["copy"].append(psql_copy("montrg_bench_raw_ref", new_file))
        await restore_steady_state(iot, last, corrected, saved)
        flow = flow_in_a_fresh_process()
        steady["flow"].append(flow["whole"])
        steady["flow_work"].append(flow["seconds"])
        steady_ratios.append(steady["copy"][-1] / flow["whole"])
        print(f"  steady state rep {rep + 1}: COPY of the new rows {steady['copy'][-1]:.2f} s, flow {flow['whole']:.2f} s "
              f"(work {flow['seconds']:.2f} s; {flow['loaded']:,} loaded, {flow['stored']:,} stored)", flush=True)
    await ref.dispose()
    await iot.dispose()
    print(f"\ntemperature_raw_etl -> PostgreSQL temperature_raw, median of {REPEATS}; whole = a fresh process from start to exit")
    print(f"{'case':<64}{'whole s':>9}{'rows/s':>11}{'work s':>8}")
    for label, rows, table in ((f"empty table: {ROWS:,} device rows (text values)", ROWS, runs),
                               (f"steady state: {NEW_ROWS:,} new + {REUPLOADS:,} re-uploads into {ROWS:,} rows", NEW_ROWS + REUPLOADS, steady)):
        copy, whole, work = (statistics.median(table[k]) for k in ("copy", "flow", "flow_work"))
        print(f"{label:<64}{whole:>9.2f}{rows / whole:>11,.0f}{work:>8.2f}")
        reference = "  reference: psql copy of the same new typed rows (binary)"
        print(f"{reference:<64}{copy:>9.2f}{(ROWS if table is runs else NEW_ROWS) / copy:>11,.0f}")
    floor, floor_work, floor_rss = (statistics.median(no_rows[k]) for k in ("flow", "flow_work", "rss"))
    print(f"{'no rows: an empty device table (what every run pays first)':<64}{floor:>9.2f}{'':>11}{floor_work:>8.2f}")
    print(f"flow speed / plain COPY's: empty table {statistics.median(ratios):.2f}x ({', '.join(f'{r:.2f}' for r in ratios)}); "
          f"steady state {statistics.median(steady_ratios):.2f}x ({', '.join(f'{r:.2f}' for r in steady_ratios)}); "
          f"the flow's process: peak RSS {max(flow_rss):.0f} MB")
    print("the best any run of this flow can reach, COPY / (no rows + COPY), as if its loading cost nothing beyond the COPY:")
    for label, table, target in (("empty table", runs, 0.5), ("steady state", steady, 0.25)):
        copy = statistics.median(table["copy"])
        print(f"  {label}: {copy:.2f} / ({floor:.2f} + {copy:.2f}) = {copy / (floor + copy):.2f}x (target {target}x)")
    print(f"  peak RSS: {floor_rss:.0f} MB with no rows read (target for the 1M-row run: 300 MB)")


def as_device_rows(readings, upload):
    """Typed readings as the gateways' device rows: text values, an upload time."""
    import polars as pl

    return readings.select(
        pl.col("loc_id").str.replace("LOC", "S").alias("sensor_id"), pl.lit("GW1").alias("device_id"), "capture_dt",
        *(pl.col(m).cast(pl.String).alias(t) for m, t in (("temperature", "t1"), ("humidity", "t2"), ("pcv_temperature", "t3"))),
        pl.lit(None, pl.String).alias("t4"), pl.lit(None, pl.String).alias("t5"), pl.lit(None, pl.String).alias("t6"),
        pl.lit("Y").alias("upload_yn"), upload.alias("upload_dt"),
    )


async def truncate(db, *tables: str) -> None:
    from sqlalchemy import text

    async with db.engine.begin() as conn:
        await conn.execute(text("TRUNCATE " + ", ".join(f"flet_montrg.{t}" for t in tables)))


def psql_copy(database: str, path: Path) -> float:
    """`psql` running `\\copy` of a binary COPY file into temperature_raw: a fresh process, timed
    from spawn to exit."""
    command = "\\copy flet_montrg.temperature_raw (" + ", ".join(RAW_COLUMNS) + f") FROM '{path}' WITH (FORMAT binary)"
    return timed(["psql", f"{PG}/{database}", "-q", "-v", "ON_ERROR_STOP=1", "-c", command])[0]


async def snapshot_watermarks(db) -> list[tuple]:
    from sqlalchemy import text

    async with db.engine.connect() as conn:
        return [tuple(r) for r in (await conn.execute(text("SELECT job_name, watermark, updated_dt FROM flet_montrg.etl_watermark"))).all()]


async def restore_steady_state(db, last, corrected, watermarks) -> None:
    """Back to 'the 1M rows loaded': the new readings gone, the corrected ones as first loaded, the watermark back."""
    from sqlalchemy import text

    async with db.engine.begin() as conn:
        await conn.execute(text("DELETE FROM flet_montrg.temperature_raw WHERE capture_dt > :last"), {"last": last})
        await conn.execute(
            text("UPDATE flet_montrg.temperature_raw r SET temperature = c.temperature "
                 "FROM unnest(CAST(:locs AS text[]), CAST(:times AS timestamp[]), CAST(:temps AS float8[])) AS c(loc_id, capture_dt, temperature) "
                 "WHERE r.loc_id = c.loc_id AND r.capture_dt = c.capture_dt"),
            {"locs": corrected["loc_id"].to_list(), "times": corrected["capture_dt"].to_list(),
             "temps": (corrected["temperature"] - 0.5).to_list()},
        )
        await conn.execute(text("DELETE FROM flet_montrg.etl_watermark"))
        for job, mark, updated in watermarks:
            await conn.execute(text("INSERT INTO flet_montrg.etl_watermark VALUES (:j, :w, :u)"), {"j": job, "w": mark, "u": updated})


def flow_in_a_fresh_process(table: str = "dbo.temperature") -> dict:
    """One temperature_raw_etl run of device table `table` in a new process, as a worker runs it,
    timed from spawn to exit."""
    return json_child(__file__, ["raw-etl-flow", table])


async def raw_etl_flow() -> None:
    """One run of the device table named by argv[2]; prints JSON (the flow call's seconds, rows read,
    loaded, stored, peak RSS)."""
    from sqlalchemy import text

    from blocks import load_database
    from flows import temperature_raw_etl

    started = time.perf_counter()
    reports = await temperature_raw_etl(device_block="montrg-bench-device", device_table=sys.argv[2], iot_block="montrg-bench-raw-iot")
    seconds = time.perf_counter() - started
    iot = await load_database("montrg-bench-raw-iot")
    async with iot.engine.connect() as conn:
        stored = (await conn.execute(text("SELECT count(*) FROM flet_montrg.temperature_raw"))).scalar_one()
    await iot.dispose()
    print(json.dumps({"seconds": seconds, "read": sum(r.rows_read for r in reports), "loaded": sum(r.loaded for r in reports),
                      "stored": stored, "rss_mb": peak_rss_mb()}))


async def collect(devices: int = 500) -> None:
    from sqlalchemy import insert

    from flows import sensor_collect
    from flows.ops.modbus_sim import DEVICES_PER_ENDPOINT, SimSensor, SimulatedEndpoint
    from flows.store.modbus import Register
    from flows.store.schema import sensors

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
    report = await sensor_collect(interval_seconds=1, duration_seconds=5, timeout_seconds=0.9, iot_block="montrg-bench-collect")
    for ep in endpoints:
        await ep.stop()
    cycles = report.seconds_per_cycle
    print(f"\nsensor_collect: {devices} simulated devices on {len(endpoints)} loopback endpoints, {len(cycles)} cycles through the flow")
    print(f"readings per cycle: {report.readings / max(report.cycles, 1):.0f} of {devices}; failures: {sum(report.failures.values())}")
    print(f"cycle time: first {cycles[0]:.3f} s (connects), median {statistics.median(cycles[1:] or cycles):.3f} s, max {max(cycles):.3f} s")


if __name__ == "__main__":
    from flows.settings import apply_prefect_defaults

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
