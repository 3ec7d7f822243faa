"""`montrg demo`: the whole pipeline once, end to end, on a simulated sensor floor.

By default on SQLite files under a folder (IoT, HQ), or on PostgreSQL with --source-url and
--target-url. A pymodbus TCP server on loopback plays the sensor floor (one device hangs, one
location runs hot); the gateways' device table gets the last hour of readings, a few of them
malformed. Then: sensor_collect, temperature_raw_etl, master_etl, temperature_backfill over the
seeded history, temperature_etl for the last hour, the pictures of `montrg report` into
FOLDER/report, and a summary to read instead of logs.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path

import polars as pl
from sqlalchemy import MetaData, delete, select

from blocks import create_block, open_database
from flows import store
from flows.domain.aggregate import encode_key
from flows.domain.windows import Window
from flows.ops import simulate
from flows.ops.report import Written, write_report
from flows.ops.seed import PREFIX, FloorSettings, seed_gateway, seed_history, seed_master, start_floor
from flows.settings import plant_now
from flows.store import Database
from flows.store.schema import (
    alarm_episodes,
    alarm_mutes,
    alerts,
    device_table,
    etl_watermark,
    init_schema,
    locations,
    sensors,
    temperature,
    temperature_raw,
    temperature_raw_reject,
    thresholds,
)

SOURCE_BLOCK, TARGET_BLOCK, DEVICE_BLOCK = "montrg-demo-iot", "montrg-demo-hq", "montrg-demo-device"
@dataclass
class Step:
    name: str
    rows: int
    seconds: float
    detail: str = ""


@dataclass
class DemoSummary:
    steps: list[Step] = field(default_factory=list)
    recent: pl.DataFrame | None = None
    alerts: pl.DataFrame | None = None
    rejects: pl.DataFrame | None = None
    where: str = ""
    report: Written | None = None


def say(message: str) -> None:
    print(f"  > {message}", flush=True)


async def run_demo(
    folder: str = "demo-data",
    reset: bool = True,
    source_url: str | None = None,
    target_url: str | None = None,
    settings: FloorSettings | None = None,
) -> DemoSummary:
    """Run the demo; returns what it did (the CLI prints it with `print_summary`)."""
    from flows import master_etl, sensor_collect, temperature_backfill, temperature_etl, temperature_raw_etl

    cfg = settings or FloorSettings()
    if (source_url is None) != (target_url is None):
        raise ValueError("give both --source-url and --target-url, or neither (SQLite files)")
    summary = DemoSummary()
    if source_url is None:
        root = Path(folder).resolve()
        root.mkdir(parents=True, exist_ok=True)
        if reset:  # the databases only: the folder also holds the demo's log and its Prefect home
            for old in (*root.glob("iot.db*"), *root.glob("hq.db*")):
                old.unlink()
        source_url, target_url = f"sqlite:///{root / 'iot.db'}", f"sqlite:///{root / 'hq.db'}"
        summary.where = f"SQLite files in {root}"
    else:
        summary.where = "the databases of --source-url / --target-url"

    say("creating blocks and the flet_montrg schema (the first call starts Prefect)")
    for block, url in ((SOURCE_BLOCK, source_url), (TARGET_BLOCK, target_url), (DEVICE_BLOCK, source_url)):
        await create_block(block, url)
    async with open_database(SOURCE_BLOCK) as iot, open_database(TARGET_BLOCK) as hq:
        for db in (iot, hq):
            async with db.engine.begin() as conn:
                await conn.run_sync(init_schema, db.schema)
        gateway = device_table(_device_table_name(iot), MetaData())
        async with iot.engine.begin() as conn:
            await conn.run_sync(gateway.metadata.create_all)
        if reset:
            await _remove_demo_rows(iot, hq, gateway)

        now = plant_now()
        end = now.replace(minute=0, second=0, microsecond=0)  # the current hour starts here
        floor, silent = await start_floor(cfg, now)
        t0 = time.perf_counter()
        try:
            await seed_master(iot, cfg, floor.port, silent.port)
            say(f"seeding {cfg.history_days} days of history for {cfg.locations} locations")
            seeded = await seed_history(iot, cfg, end - timedelta(days=cfg.history_days), end - timedelta(hours=1))
            gateway_rows = await seed_gateway(iot, gateway, cfg, end - timedelta(hours=1), end)
            summary.steps.append(Step("seed", seeded + gateway_rows, time.perf_counter() - t0,
                                      f"{seeded:,} history readings, {gateway_rows:,} gateway rows"))

            say(f"sensor_collect: polling {cfg.locations} Modbus devices for {cfg.collect_seconds:g} s")
            t = time.perf_counter()
            collected = await sensor_collect(
                interval_seconds=cfg.interval_seconds, duration_seconds=cfg.collect_seconds,
                timeout_seconds=min(0.5, cfg.interval_seconds / 2),
                window_start=datetime.now().astimezone() + timedelta(seconds=cfg.interval_seconds),
                iot_block=SOURCE_BLOCK,
            )
            failed = ", ".join(f"{k} ({v} cycles)" for k, v in collected.failures.items()) or "none"
            summary.steps.append(Step("sensor_collect", collected.written, time.perf_counter() - t,
                                      f"{collected.cycles} cycles; failed: {failed}"))
        finally:
            await floor.stop()
            await silent.stop()

        say("temperature_raw_etl: gateway table -> temperature_raw")
        t = time.perf_counter()
        loads = await temperature_raw_etl(device_block=DEVICE_BLOCK, device_table=gateway.fullname, iot_block=SOURCE_BLOCK)
        summary.steps.append(Step("temperature_raw_etl", sum(r.loaded for r in loads), time.perf_counter() - t,
                                  f"{sum(r.rejected for r in loads)} rejected"))

        say("master_etl: locations, sensors, thresholds -> HQ")
        t = time.perf_counter()
        synced = await master_etl(source_block=SOURCE_BLOCK, target_block=TARGET_BLOCK)
        summary.steps.append(Step("master_etl", sum(int(r["inserted"]) + int(r["updated"]) for r in synced),
                                  time.perf_counter() - t,
                                  ", ".join(f"{r['table']} +{r['inserted']}" for r in synced)))

        say("temperature_backfill over the history")
        t = time.perf_counter()
        back = await temperature_backfill(
            start=(end - timedelta(days=cfg.history_days)).date(), end=end - timedelta(hours=1),
            source_block=SOURCE_BLOCK, target_block=TARGET_BLOCK,
        )
        summary.steps.append(Step("temperature_backfill", int(back.totals["location_hours"]), time.perf_counter() - t,
                                  f"{back.totals['raw_rows']:,} raw rows over {back.window}"))

        say("temperature_etl for the last full hour (with alerts)")
        t = time.perf_counter()
        hourly = await temperature_etl(hour=end - timedelta(hours=1), source_block=SOURCE_BLOCK, target_block=TARGET_BLOCK)
        summary.steps.append(Step("temperature_etl", int(hourly.totals["location_hours"]), time.perf_counter() - t,
                                  f"{hourly.window}: {hourly.totals['alerts_opened']} alerts opened"))

        summary.recent, summary.alerts, summary.rejects = await _read_results(iot, hq, end)
        say("montrg report: the plant-health pictures and an HTML page")
        summary.report = await write_report(hq, 24, Path(folder).resolve() / "report")
    return summary


def _device_table_name(iot: Database) -> str:
    return f"{iot.schema}.demo_gateway_temperature" if iot.schema else "demo_gateway_temperature"


async def _remove_demo_rows(iot: Database, hq: Database, gateway) -> None:
    """Reset: delete what an earlier demo wrote (demo locations only; other rows are untouched)."""
    like = f"{PREFIX}%"
    async with iot.engine.begin() as conn:
        for table in (temperature_raw, temperature_raw_reject, sensors, locations):
            await conn.execute(delete(table).where(table.c.loc_id.like(like)))
        await conn.execute(delete(temperature_raw_reject).where(temperature_raw_reject.c.source.like("device:montrg-demo%")))
        await conn.execute(delete(thresholds).where(thresholds.c.threshold_id >= 900_000))
        await conn.execute(delete(gateway))
        await conn.execute(delete(etl_watermark).where(etl_watermark.c.job_name.like("temperature-raw-etl:montrg-demo%")))
    async with hq.engine.begin() as conn:
        for table in (temperature, alerts, alarm_episodes, alarm_mutes, sensors, locations):
            await conn.execute(delete(table).where(table.c.loc_id.like(like)))
        await conn.execute(delete(thresholds).where(thresholds.c.threshold_id >= 900_000))


async def _read_results(iot: Database, hq: Database, end: datetime):
    recent = await store.read_hourly(hq, Window(end - timedelta(hours=3), end))
    show = [simulate.location_id(i, PREFIX) for i in range(4)]
    recent = (
        encode_key(recent.filter(pl.col("loc_id").is_in(show)))
        .select("loc_id", "ymd", "hh", "temperature_max", "temperature_avg", "humidity_max", "humidity_avg", "sample_count")
        .sort("loc_id", "ymd", "hh")
    )
    live = await store.read_episodes(hq, live_only=True)
    found = live.filter(pl.col("loc_id").str.starts_with(PREFIX)).select(
        pl.col("episode_id").alias("alarm"), "loc_id", "measure", "peak_level", "first_hour", "last_hour", "state"
    ).sort("loc_id", "measure")
    async with iot.engine.connect() as conn:
        rows = (await conn.execute(
            select(temperature_raw_reject.c.sensor_id, temperature_raw_reject.c.capture_dt, temperature_raw_reject.c.reason)
            .where(temperature_raw_reject.c.source.like("device:montrg-demo%")).order_by(temperature_raw_reject.c.capture_dt)
        )).all()
    rejects = pl.DataFrame(rows, schema=["sensor_id", "capture_dt", "reason"], orient="row")
    return recent, found, rejects


def print_summary(summary: DemoSummary) -> None:
    import os

    print("\n=== flet-montrg demo ===")
    print(f"{'step':<22}{'rows':>10}{'seconds':>9}  details")
    for step in summary.steps:
        print(f"{step.name:<22}{step.rows:>10,}{step.seconds:>9.1f}  {step.detail}")
    cfg = pl.Config(tbl_rows=30, tbl_hide_dataframe_shape=True, tbl_hide_column_data_types=True, tbl_width_chars=140, fmt_str_lengths=90)
    with cfg:
        print("\nlast 3 hours of the first locations (HQ temperature; DEMO-L001 runs hot):")
        print(summary.recent)
        print(f"\nopen alarms, one per location and measure however many hours it lasts (montrg alarms list --open) "
              f"({0 if summary.alerts is None else summary.alerts.height}):")
        print(summary.alerts)
        print(f"\nrejected gateway readings ({0 if summary.rejects is None else summary.rejects.height}), kept with their reasons:")
        print(summary.rejects)
    if summary.report is not None:
        done = summary.report
        print(f"\npictures (coverage grid of {done.locations} locations, temperature against the limits of "
              f"{', '.join(done.charted) or 'none'}): {done.folder / 'index.html'}")
    print(f"\ndata: {summary.where}")
    api = os.environ.get("PREFECT_API_URL")
    if api:
        print(f"flow runs, logs and artifacts: {api.removesuffix('/api')}/runs")
    else:
        home = os.environ.get("PREFECT_HOME", "~/.prefect")
        print(f"flow runs, logs and artifacts: these ran on a temporary Prefect server of the demo's own ({home}); to browse them,")
        print(f"  run `PREFECT_HOME={home} make server` and open http://127.0.0.1:4200/runs")
