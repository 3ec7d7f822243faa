"""The hourly chunk pipeline, shared by temperature_etl and temperature_backfill.

One chunk reads like the seed's DAG: extract -> aggregate -> upsert -> validate -> alerts,
plain functions called in that order by run_chunk, each with its log lines; run_chunk is one
task run (chunk_task), retried as a whole when a connection is lost. Both flows run all of it, so
the alerts of every hour a flow rewrites follow its data.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass, field, fields
from datetime import datetime

import polars as pl
from prefect import task
from prefect.logging import get_run_logger

from flows.core import aggregate, alerts, health, readings, validate
from flows.core.errors import TargetValidationError
from flows.core.io import sql
from flows.core.io.sql import Database
from flows.core.schema import alerts as alerts_table
from flows.core.schema import etl_watermark, locations, temperature, temperature_raw, thresholds
from flows.core.settings import IN_FLIGHT, coverage_min, notify_hours, plant_now, poll_interval_seconds
from flows.core.streams import WriteTurns
from flows.core.windows import HOUR, Window
from flows.task_policy import RETRYING, require_tables


@dataclass
class ChunkReport:
    window: str
    raw_rows: int
    location_hours: int
    inserted: int
    updated: int
    unchanged: int
    seconds: float
    removed: int = 0  # location-hours whose readings were all deleted at the source
    alerts_opened: int = 0
    alerts_resolved: int = 0
    alerts_notified: int = 0


ETL_JOB = "temperature-etl"  # the hourly job's watermark (etl_watermark.job_name), extended by the backfill too
SOURCE_TABLES = [temperature_raw]  # what the hourly job and the backfill read
TARGET_TABLES = [temperature, etl_watermark, thresholds, locations, alerts_table]  # what they read and write


@task(name="check-connections", **RETRYING)
async def check_connections(source: Database, target: Database) -> None:
    """Both databases answer and hold the tables this job needs (checked at the same time)."""
    needs = ((source, SOURCE_TABLES, None), (target, TARGET_TABLES, "target_block (the HQ database)"))
    versions = await asyncio.gather(*(require_tables(*need) for need in needs), return_exceptions=True)
    for failure in (v for v in versions if isinstance(v, BaseException)):
        raise failure  # the source's problem first, whichever answered first
    for (db, _, _), version in zip(needs, versions):
        get_run_logger().info("%s answers (%s), tables present", db.describe(), version)


@dataclass
class Extracted:
    """What extract read: raw rows (to aggregate here) or the source's partial aggregates."""

    kind: str  # "raw" or "partial"
    frame: pl.DataFrame
    raw_rows: int


PUSHDOWN_DIALECTS = ("postgresql", "mysql", "mssql", "oracle")


async def extract(source: Database, window: Window) -> Extracted:
    """The window's readings from the source: aggregated in the source where it can (PostgreSQL,
    MariaDB, SQL Server, Oracle: per location and hour max/min/sum/count), else the raw rows (SQLite)."""
    started = time.perf_counter()
    pushdown = source.dialect in PUSHDOWN_DIALECTS
    partial = await sql.read_partial_hourly(source, window) if pushdown else None
    if partial is not None and aggregate.partial_is_plausible(partial, readings.plant_limits()):
        extracted = Extracted("partial", partial, int(partial["sample_count"].sum() or 0))
    else:  # SQLite, or some value is not finite, outside the physical limits or overflows a sum:
        raw = await sql.read_raw(source, window, check=False)  # the raw rows name the culprits
        extracted = Extracted("raw", raw, raw.height)
    get_run_logger().info(
        "read %d raw rows of %s from %s (%s) in %.2f s",
        extracted.raw_rows, window, source.describe(),
        "aggregated in the source" if extracted.kind == "partial" else "raw rows", time.perf_counter() - started,
    )
    return extracted


@dataclass
class Aggregated:
    """The location-hours to write, and the raw values that kept theirs out (none, normally)."""

    hourly: pl.DataFrame
    left_out: pl.DataFrame

    def left_out_hours(self) -> pl.DataFrame:
        """(loc_id, alert_time) of the location-hours left out: their rows and alerts stay as they are."""
        if not self.left_out.height:
            return pl.DataFrame(schema={"loc_id": pl.String, "alert_time": pl.Datetime("us")})
        return self.left_out.select("loc_id", pl.col("capture_dt").dt.truncate("1h").alias("alert_time")).unique()


async def aggregate_hourly(extracted: Extracted, window: Window) -> Aggregated:
    """Per location and hour: max, avg, min and count of each measure.

    A raw value that is not finite or lies outside the physical limits (readings.plant_limits)
    has no place in an average: its location-hour is left out, and named after the others are
    written, whatever the source's dialect."""
    left_out = pl.DataFrame()
    if extracted.kind == "partial":
        hourly = aggregate.finish_partial(extracted.frame)
    else:
        raw = extracted.frame
        left_out = validate.bad_raw_values(raw, readings.plant_limits())
        if left_out.height:
            hour = pl.col("capture_dt").dt.truncate("1h")
            raw = raw.join(left_out.select("loc_id", hour.alias("_hour")).unique(), left_on=["loc_id", hour], right_on=["loc_id", "_hour"], how="anti")
        hourly = aggregate.hourly(raw)
    bad = validate.bad_hourly_values(hourly)
    if bad.height:
        raise TargetValidationError(validate.describe(bad, f"aggregated rows of {window} break an invariant"))
    get_run_logger().info("aggregated %d raw rows into %d location-hours", extracted.raw_rows, hourly.height)
    return Aggregated(hourly, left_out)


async def upsert_hourly(
    target: Database, hourly: pl.DataFrame, window: Window, judged: Window | None, spare: pl.DataFrame
) -> sql.UpsertResult:
    """Upsert the location-hours into the target, in one transaction; in the `judged` part of the
    window, remove those whose readings were all deleted at the source (but the `spare` ones)."""
    prune_from = judged.start if judged is not None else None
    result = await sql.upsert_hourly(target, hourly, window, plant_now(), prune_from, spare)
    get_run_logger().info(
        "%s: %d inserted, %d updated, %d unchanged, %d removed",
        target.describe(), result.inserted, result.updated, result.unchanged, result.removed,
    )
    return result


async def validate_hourly(target: Database, hourly: pl.DataFrame, window: Window) -> None:
    """The target holds every computed location-hour, with consistent values."""
    stored = await sql.read_hourly(target, window)
    missing = validate.missing_keys(hourly, stored)
    if missing.height:
        raise TargetValidationError(validate.describe(missing, f"location-hours missing from {target.describe()}"))
    written = stored.join(hourly.select(aggregate.KEYS), on=list(aggregate.KEYS), how="semi")
    differs = validate.differing_rows(written, hourly)
    if differs.height:
        raise TargetValidationError(validate.describe(differs, f"location-hours in {target.describe()} differ from what was computed"))
    bad = validate.bad_hourly_values(written)
    if bad.height:
        raise TargetValidationError(validate.describe(bad, f"rows in {target.describe()} break an invariant"))
    get_run_logger().info("validated %d location-hours of %s", written.height, window)


@dataclass
class Judged:
    """What a chunk judges beyond the hours it writes: the hours from the source's first reading on
    (before it, the source keeps no readings, so a missing hour there says nothing), and the
    locations' expected readings (coverage)."""

    window: Window | None  # the part of the chunk's window at or after the source's first reading
    expected: pl.DataFrame  # health.expected_readings of the target's locations


async def judge(source: Database, target: Database, window: Window) -> Judged:
    horizon = await sql.source_horizon(source)
    part = None
    if horizon is not None and horizon < window.end:
        part = Window(max(horizon, window.start), window.end)
    expected = health.expected_readings(await sql.read_locations(target), poll_interval_seconds())
    return Judged(part, expected)


EVENTS = {health.COVERAGE: "montrg.coverage.low"}  # other measures: montrg.threshold.breached


async def evaluate_alerts(
    target: Database, hourly: pl.DataFrame, judged: Judged, spare: pl.DataFrame, window: Window
) -> sql.AlertChanges:
    """Compare the hours just written with the active thresholds and with their expected readings;
    record every level breached in `alerts`, and announce the highest one per location, hour and
    measure (or its escalation) as a Prefect event about `montrg.location.<loc_id>`:
    `montrg.threshold.breached` for a measure, `montrg.coverage.low` for missing readings.

    Hours before the source's first reading are left as they are; coverage is judged for the
    hours that have ended; hours older than MONTRG_NOTIFY_HOURS are recorded without an event.
    """
    from prefect.events import emit_event

    now = plant_now()
    found = alerts.breaches(hourly, await sql.read_thresholds(target))
    if judged.window is None:
        return sql.AlertChanges(found.clear(), 0, found.clear())
    ended = [h for h in health.hours_of(judged.window.start, judged.window.end) if h + HOUR <= now]
    gaps = health.coverage_alerts(hourly, judged.expected, ended, coverage_min())
    found = pl.concat([found, gaps], how="vertical_relaxed")
    changes = await sql.record_alerts(
        target, found, judged.window.start, judged.window.end - HOUR, spare, now, now - notify_hours() * HOUR
    )
    for row in changes.notified.iter_rows(named=True):
        payload = {k: (v.isoformat() if isinstance(v, datetime) else v) for k, v in row.items()}
        emit_event(
            event=EVENTS.get(row["measure"], "montrg.threshold.breached"),
            resource={"prefect.resource.id": f"montrg.location.{row['loc_id']}", "prefect.resource.name": str(row["loc_id"])},
            payload={**payload, "escalated": row["replaces"] is not None},
        )
    get_run_logger().info(
        "%d alert levels in %s (%d of them coverage): %d opened, %d resolved, %d announced",
        found.height, window, gaps.height, changes.opened.height, changes.resolved, changes.notified.height,
    )
    return changes


async def run_chunk(
    source: Database,
    target: Database,
    window: Window,
    number: int = 0,
    turns: WriteTurns | None = None,
) -> ChunkReport:
    """extract -> aggregate -> upsert -> validate -> alerts for one window; returns what it did.

    With `turns`, the reads run at once and the writes wait for chunk `number`'s turn. The target
    is read twice: by the upsert before it writes (to write only the rows that changed) and by the
    validation after the commit (what the database holds, its types and triggers applied); one
    read cannot serve both."""
    started = time.perf_counter()
    extracted = await extract(source, window)
    judged = await judge(source, target, window)
    async with turns.turn(number) if turns else contextlib.nullcontext():
        if extracted.raw_rows == 0 and judged.window is None:
            get_run_logger().info("no raw rows in %s, none after it either: nothing to write or judge", window)
            return ChunkReport(str(window), 0, 0, 0, 0, 0, round(time.perf_counter() - started, 3))
        aggregated = await aggregate_hourly(extracted, window)
        hourly = health.with_coverage(aggregated.hourly, judged.expected, poll_interval_seconds())
        spare = aggregated.left_out_hours()
        spare_keys = spare.select("loc_id", pl.col("alert_time").dt.strftime("%Y%m%d").alias("ymd"),
                                  pl.col("alert_time").dt.strftime("%H").alias("hh"))
        result = await upsert_hourly(target, hourly, window, judged.window, spare_keys)
        await validate_hourly(target, hourly, window)
        changes = await evaluate_alerts(target, hourly, judged, spare, window)
    if aggregated.left_out.height:
        raise sql.SourceDataError(
            f"{source.describe()}: "
            + validate.describe(
                aggregated.left_out.with_columns(hour=pl.col("capture_dt").dt.truncate("1h")),
                f"raw values of {window} cannot be averaged; their location-hours were left out "
                f"(the other {hourly.height} were written): correct or delete these readings and run it again",
            )
        )
    report = ChunkReport(
        str(window), extracted.raw_rows, hourly.height, result.inserted, result.updated, result.unchanged,
        round(time.perf_counter() - started, 3), result.removed,
        changes.opened.height, changes.resolved, changes.notified.height,
    )
    get_run_logger().info(
        "chunk %s: %d raw rows -> %d location-hours (%d new, %d updated, %d removed) in %.2f s",
        window, report.raw_rows, report.location_hours, report.inserted, report.updated, report.removed, report.seconds,
    )
    return report


chunk_task = task(name="aggregate-chunk", task_run_name="aggregate-chunk {window}", **RETRYING)(run_chunk)
"""run_chunk as one task run, for the hourly job and the backfill alike: retried as a whole when
a connection is lost (the chunk is one transaction, so a retry starts clean); its steps log."""



async def process_chunks(
    source: Database,
    target: Database,
    pieces: list[Window],
    after_each: Callable[[int, ChunkReport], Awaitable[None]] | None = None,
) -> list[ChunkReport]:
    """Process `pieces`, each one task run (chunk_task), up to IN_FLIGHT at once: reads overlap,
    writes go in order."""
    turns = WriteTurns()

    def start(number: int) -> asyncio.Future:
        return asyncio.ensure_future(chunk_task(source, target, pieces[number], number, turns))

    reports: list[ChunkReport] = []
    running: deque[asyncio.Future] = deque()
    queued = 0
    try:
        for number in range(len(pieces)):
            while queued < len(pieces) and len(running) < IN_FLIGHT:
                running.append(start(queued))
                queued += 1
            reports.append(await running.popleft())
            if after_each is not None:
                await after_each(number + 1, reports[-1])
    finally:
        for pending in running:
            pending.cancel()
        for pending in running:
            with contextlib.suppress(BaseException):
                await pending
    return reports


@dataclass
class RunReport:
    """What a run of temperature_etl or temperature_backfill did, chunk by chunk."""

    window: str
    chunks: list[ChunkReport]
    children: list[dict[str, str]] = field(default_factory=list)  # chunks run on the pool (fan_out)

    @property
    def totals(self) -> dict[str, int | float]:
        """Every numeric field of ChunkReport, summed over the chunks."""
        keys = [f.name for f in fields(ChunkReport) if f.name != "window"]
        return {k: round(sum(getattr(c, k) for c in self.chunks), 3) for k in keys}

    def table(self) -> list[dict[str, object]]:
        if self.children:
            return list(self.children)
        return [asdict(c) for c in self.chunks] + [{"window": "total", **self.totals}]
