"""sensor_collect: poll the plant's Modbus TCP sensors into temperature_raw (new; the seed only
installed pymodbus). One run covers a window; scheduled runs tile (a 10-minute run every 10 minutes)."""

from __future__ import annotations

import asyncio
import math
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, tzinfo

import polars as pl
from prefect import task
from prefect.artifacts import acreate_table_artifact
from prefect.logging import get_run_logger
from prefect.runtime import flow_run

from blocks import open_database
from flows import store
from flows.domain import readings
from flows.domain.windows import check_range, is_repeated
from flows.pipelines.params import checked, flow
from flows.pipelines.policy import RETRYING, answering
from flows.pipelines.raw import check_raw_tables, iot_block_of
from flows.pipelines.run_names import collect_name, runtime_name
from flows.pipelines.stuck_runs import look_after_stuck_runs
from flows.settings import DEFAULT_IOT_BLOCK, plant_limits, plant_tz
from flows.store import Database
from flows.store.modbus import ModbusPoller, Sensor, parse_registers

ORIGIN = "modbus"


@dataclass
class CollectReport:
    cycles: int = 0
    sensors: int = 0
    readings: int = 0
    written: int = 0
    rejected: int = 0
    missed: int = 0  # cycles whose time passed while a write waited for the database
    failures: Counter = field(default_factory=Counter)  # sensor_id -> failed cycles
    seconds_per_cycle: list[float] = field(default_factory=list)


@task(name="load-sensors", **RETRYING)
async def load_sensors(iot: Database) -> list[Sensor]:
    """Active sensors with a Modbus endpoint; a sensor with a bad register map is named and skipped."""
    logger = get_run_logger()
    async with answering(iot, "reading the sensors table"):
        table = await store.read_sensors(iot)
    out = []
    for row in table.filter(pl.col("is_active") & pl.col("host").is_not_null()).iter_rows(named=True):
        try:
            registers = parse_registers(row["registers"], row["sensor_id"])
        except ValueError as exc:
            logger.error("skipping %s", exc)
            continue
        out.append(Sensor(row["sensor_id"], row["loc_id"], row["host"], int(row["port"] or 502), int(row["device_id"] or 1), registers))
    logger.info("%d active Modbus sensors on %d endpoints", len(out), len({(s.host, s.port) for s in out}))
    return out


def second_pass(tick: float, tz: tzinfo) -> bool:
    """True when epoch second `tick` falls in the second pass of a repeated plant-local hour (the
    autumn daylight-saving change): its naive local time already named a reading an hour earlier."""
    local = datetime.fromtimestamp(tick, tz)
    return local.fold == 1 and is_repeated(local.replace(tzinfo=None), tz)


@task(name="flush-readings", task_run_name="flush-readings {cycles} cycles", **RETRYING)  # idempotent: stored once per (loc_id, capture_dt)
async def flush(iot: Database, buffer: list[dict[str, object]], sensors: pl.DataFrame, cycles: int) -> store.WriteResult:
    """Validate buffered readings (NaN, physical limits) and write them and their rejects at once.

    Readings of the second pass of a repeated (daylight-saving) hour, whose naive capture_dt
    already names the first pass's reading (`second_pass`), go to the rejects with that reason:
    never lost quietly."""
    rows = pl.DataFrame(buffer, schema={"sensor_id": pl.String, "device_id": pl.String, "capture_dt": pl.Datetime("us"),
                                        **{f"t{i}": pl.String for i in range(1, 7)}, "upload_dt": pl.Datetime("us"),
                                        "second_pass": pl.Boolean})
    now = rows["capture_dt"].max()
    rows, flags = rows.drop("second_pass"), rows["second_pass"]
    parsed = readings.parse_device_rows(rows.filter(~flags), sensors, readings.DEFAULT_VALUE_COLUMNS, plant_limits(), ORIGIN, now)
    set_aside = rows.filter(flags).join(sensors.select("sensor_id", "loc_id"), on="sensor_id", how="left").with_columns(
        reason=readings.repeated_reason(pl.col("capture_dt"))
    )
    found = pl.concat([parsed.rejects, readings.rejects(set_aside, rows.columns, ORIGIN, now, ["sensor_id", "capture_dt", "upload_dt"])])
    # at-least-once collection: a reading already stored (overlapping or repeated run) is kept once
    async with answering(iot, "writing readings"):
        return await store.write_readings(iot, parsed.good, found, replace=False)


async def _flush(iot: Database, buffer: list[dict[str, object]], sensors: pl.DataFrame, report: CollectReport) -> list:
    """Write what `buffer` holds (if anything), count it in `report`; returns the empty buffer."""
    if buffer:
        written = await flush(iot, buffer, sensors, report.cycles)
        report.written += written.written
        report.rejected += written.rejected
    return []


def _grid(start: datetime, duration: float, interval: float, tz: tzinfo) -> list[float]:
    """Epoch seconds of the interval's grid points in [start, start + duration)."""
    if start.tzinfo is None or start.utcoffset() is None:
        start = start.replace(tzinfo=tz)
    begin = start.timestamp()
    first = math.ceil(begin / interval) * interval
    return [t for t in (first + i * interval for i in range(int(duration / interval) + 1)) if t < begin + duration]


def _row(sensor: Sensor, capture_dt: datetime, values: dict[str, object]) -> dict[str, object]:
    text = {m: None if values.get(m) is None else repr(float(values[m])) for m in readings.DEFAULT_VALUE_COLUMNS}
    return {
        "sensor_id": sensor.sensor_id, "device_id": str(sensor.device_id), "capture_dt": capture_dt,
        **{readings.DEFAULT_VALUE_COLUMNS[m]: text[m] for m in text}, "t4": None, "t5": None, "t6": None,
        "upload_dt": capture_dt,
    }


@flow(name="sensor-collect", flow_run_name=runtime_name(collect_name), timeout_seconds=2 * 60 * 60, validate_parameters=False)
@checked
async def sensor_collect(
    interval_seconds: float = 10.0,
    duration_seconds: float = 600.0,
    timeout_seconds: float = 2.0,
    flush_every_cycles: int = 6,
    window_start: datetime | None = None,
    iot_block: str = DEFAULT_IOT_BLOCK,
    source_block: str | None = None,
) -> CollectReport:
    """Poll every active Modbus TCP sensor every `interval_seconds` for `duration_seconds`.

    The sensors (host, port, device id, register map) come from the sensors table of the IoT
    database. All sensors are polled concurrently each cycle, each request bounded by
    `timeout_seconds`. The run covers [window_start, window_start + duration) - by default from
    its scheduled time, so scheduled runs tile time even when one starts late - on a grid of the
    interval (e.g. :00, :10, :20 s); cycles already past are skipped. One cycle's readings share
    its capture_dt (plant local time), so overlapping or repeated runs store each reading once. Readings are buffered and written in batches (COPY on PostgreSQL).
    A sensor that times out, refuses or answers with a Modbus error is logged, counted and polled
    again next cycle; the run fails only if no sensor answered at all.

    Args:
        interval_seconds: Seconds between polls.
        duration_seconds: How long this run collects; schedule runs this often to tile time.
        timeout_seconds: Longest wait for one sensor's answer.
        flush_every_cycles: Cycles buffered per database write.
        window_start: Start of the window (plant time unless it has an offset); empty: the
            run's scheduled start time.
        iot_block: Database block of the IoT database the readings are loaded into.
        source_block: Deprecated name of iot_block (still accepted, with a warning).
    """
    if not 0.1 <= interval_seconds <= 3600:
        raise ValueError(f"interval_seconds={interval_seconds!r} must be 0.1..3600")
    if not 0 < duration_seconds <= 24 * 3600:
        raise ValueError(f"duration_seconds={duration_seconds!r} must be more than 0 and at most 86400")
    if not 0 < timeout_seconds < interval_seconds:
        raise ValueError(f"timeout_seconds={timeout_seconds!r} must be positive and below interval_seconds={interval_seconds}")
    check_range(flush_every_cycles, "flush_every_cycles", 1, 10_000, "cycles")
    tz = plant_tz()
    if window_start is not None:
        now = datetime.now(tz)
        start = window_start if window_start.utcoffset() is not None else window_start.replace(tzinfo=tz)
        if abs((start - now).total_seconds()) > 24 * 3600 + duration_seconds:
            raise ValueError(
                f"window_start={window_start.isoformat()} is more than a day from now ({now:%Y-%m-%d %H:%M %Z}): "
                "sensor_collect polls the sensors now; leave it empty to start at the run's scheduled time"
            )
    logger = get_run_logger()
    await look_after_stuck_runs(logger)
    report = CollectReport()
    iot_block = iot_block_of(iot_block, source_block)
    async with open_database(iot_block) as iot:
        await check_raw_tables(iot)
        sensors = await load_sensors(iot)
        if not sensors:
            raise RuntimeError(f"{iot.describe()}: no active sensor with a Modbus endpoint and a valid register map")
        report.sensors = len(sensors)
        sensor_map = pl.DataFrame({"sensor_id": [s.sensor_id for s in sensors], "loc_id": [s.loc_id for s in sensors]})
        by_id = {s.sensor_id: s for s in sensors}
        poller = ModbusPoller(sensors, timeout_seconds)
        buffer: list[dict[str, object]] = []
        answered: set[str] = set()
        start = window_start or flow_run.scheduled_start_time
        ticks = _grid(start, duration_seconds, interval_seconds, tz)
        past = [t for t in ticks if t < time.time() - interval_seconds / 2]
        if past and len(past) == len(ticks):
            end = datetime.fromtimestamp(ticks[-1] + interval_seconds, tz)
            raise RuntimeError(
                f"started after its whole window ({datetime.fromtimestamp(ticks[0], tz):%Y-%m-%d %H:%M:%S} .. {end:%H:%M:%S} "
                f"plant time) had passed: no cycle could be polled, so the window's {len(ticks)} cycles are missing "
                "(the hours' coverage shows them)"
            )
        if past:
            logger.warning("started late: skipping %d cycles already past", len(past))
        ticks = ticks[len(past):]
        try:
            for tick in ticks:
                if tick < time.time() - interval_seconds / 2:
                    # a write that waited for the database (retries) let this cycle's time pass: a reading
                    # taken now would carry a time it was not taken at, so the cycle is missed, and counted
                    report.missed += 1
                    continue
                await asyncio.sleep(max(0.0, tick - time.time()))
                capture_dt = datetime.fromtimestamp(tick, tz).replace(tzinfo=None)
                again = second_pass(tick, tz)
                started = time.perf_counter()
                result = await poller.poll()
                report.seconds_per_cycle.append(time.perf_counter() - started)
                report.cycles += 1
                report.readings += len(result.readings)
                answered.update(r["sensor_id"] for r in result.readings)  # type: ignore[misc]
                buffer.extend({**_row(by_id[r["sensor_id"]], capture_dt, r), "second_pass": again} for r in result.readings)  # type: ignore[index]
                report.failures.update(result.failures.keys())
                if result.failures:
                    logger.warning(
                        "cycle %s: %d of %d sensors answered; failed: %s",
                        capture_dt.time(), len(result.readings), len(sensors),
                        "; ".join(f"{k}: {v}" for k, v in sorted(result.failures.items())[:10]),
                    )
                if report.cycles % flush_every_cycles == 0:
                    buffer = await _flush(iot, buffer, sensor_map, report)
            await _flush(iot, buffer, sensor_map, report)
        finally:
            await poller.close()
    logger.info(
        "%d cycles, %d sensors: %d readings, %d new rows, %d rejected; slowest cycle %.3f s",
        report.cycles, report.sensors, report.readings, report.written, report.rejected, max(report.seconds_per_cycle, default=0),
    )
    if report.missed:
        logger.warning("%d cycles missed while a write waited for the database (their readings were not taken)", report.missed)
    await acreate_table_artifact(
        key="sensor-collect",
        table=[{"sensor_id": k, "failed_cycles": v} for k, v in sorted(report.failures.items())] or [{"sensor_id": "-", "failed_cycles": 0}],
        description=f"{report.cycles} cycles, {report.readings} readings, {report.written} new rows",
    )
    if not answered:
        raise RuntimeError(f"no sensor answered in {report.cycles} cycles ({report.sensors} sensors polled)")
    return report
