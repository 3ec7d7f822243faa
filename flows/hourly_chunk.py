"""The hourly chunk pipeline, shared by temperature_etl and temperature_backfill.

One chunk reads like the seed's DAG: extract -> aggregate -> upsert -> validate (-> alerts),
plain functions called in that order by run_chunk, each with its log lines; run_chunk is one
task run (chunk_task), retried as a whole when a connection is lost.
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

from flows.core import aggregate, alerts, readings, validate
from flows.core.errors import TargetValidationError
from flows.core.io import sql
from flows.core.io.sql import Database
from flows.core.schema import alerts as alerts_table
from flows.core.schema import etl_watermark, temperature, temperature_raw, thresholds
from flows.core.settings import IN_FLIGHT, plant_now
from flows.core.streams import WriteTurns
from flows.core.windows import Window
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
    alerts_opened: int = 0
    alerts_resolved: int = 0


SOURCE_TABLES = [temperature_raw]  # what the hourly job and the backfill read
TARGET_TABLES = [temperature, etl_watermark, thresholds, alerts_table]  # what they write


@task(name="check-connections", **RETRYING)
async def check_connections(source: Database, target: Database) -> None:
    """Both databases answer and hold the tables this job needs (checked at the same time)."""
    needs = ((source, SOURCE_TABLES), (target, TARGET_TABLES))
    versions = await asyncio.gather(*(require_tables(db, tables) for db, tables in needs), return_exceptions=True)
    for failure in (v for v in versions if isinstance(v, BaseException)):
        raise failure  # the source's problem first, whichever answered first
    for (db, _), version in zip(needs, versions):
        get_run_logger().info("%s answers (%s), tables present", db.describe(), version)


@dataclass
class Extracted:
    """What extract read: raw rows (to aggregate here) or the source's partial aggregates."""

    kind: str  # "raw" or "partial"
    frame: pl.DataFrame
    raw_rows: int


PUSHDOWN_DIALECTS = ("postgresql", "mysql")


async def extract(source: Database, window: Window) -> Extracted:
    """The window's readings from the source: aggregated in the source where it can (PostgreSQL,
    MariaDB: per location and hour max/min/sum/count), else the raw rows (SQLite)."""
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


async def upsert_hourly(target: Database, hourly: pl.DataFrame, window: Window) -> sql.UpsertResult:
    """Upsert the location-hours into the target, in one transaction."""
    result = await sql.upsert_hourly(target, hourly, window, plant_now())
    get_run_logger().info(
        "%s: %d inserted, %d updated, %d unchanged",
        target.describe(), result.inserted, result.updated, result.unchanged,
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


async def evaluate_alerts(target: Database, hourly: pl.DataFrame, window: Window) -> sql.AlertChanges:
    """Compare the hours just written with the active thresholds; record and announce breaches.

    Each new (or re-opened) breach is recorded once in `alerts` and emitted as the Prefect event
    `montrg.threshold.breached` about the resource `montrg.location.<loc_id>`, for automations.
    """
    from prefect.events import emit_event

    found = alerts.breaches(hourly, await sql.read_thresholds(target))
    hours = hourly.select("loc_id", alerts.hour_start())
    changes = await sql.record_alerts(target, found, hours, plant_now())
    for row in changes.opened.iter_rows(named=True):
        emit_event(
            event="montrg.threshold.breached",
            resource={"prefect.resource.id": f"montrg.location.{row['loc_id']}", "prefect.resource.name": str(row["loc_id"])},
            payload={k: (v.isoformat() if isinstance(v, datetime) else v) for k, v in row.items()},
        )
    get_run_logger().info(
        "%d threshold breaches in %s: %d opened, %d resolved", found.height, window, changes.opened.height, changes.resolved
    )
    return changes


async def run_chunk(
    source: Database,
    target: Database,
    window: Window,
    with_alerts: bool = False,
    number: int = 0,
    turns: WriteTurns | None = None,
) -> ChunkReport:
    """extract -> aggregate -> upsert -> validate (-> alerts) for one window; returns what it did.

    With `turns`, the read runs at once and the writes wait for chunk `number`'s turn. The target
    is read twice: by the upsert before it writes (to write only the rows that changed) and by the
    validation after the commit (what the database holds, its types and triggers applied); one
    read cannot serve both."""
    started = time.perf_counter()
    extracted = await extract(source, window)
    async with turns.turn(number) if turns else contextlib.nullcontext():
        if extracted.raw_rows == 0:
            get_run_logger().info("no raw rows in %s: nothing to write", window)
            return ChunkReport(str(window), 0, 0, 0, 0, 0, round(time.perf_counter() - started, 3))
        aggregated = await aggregate_hourly(extracted, window)
        hourly = aggregated.hourly
        result = await upsert_hourly(target, hourly, window)
        await validate_hourly(target, hourly, window)
        opened = resolved = 0
        if with_alerts:
            changes = await evaluate_alerts(target, hourly, window)
            opened, resolved = changes.opened.height, changes.resolved
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
        round(time.perf_counter() - started, 3), opened, resolved,
    )
    get_run_logger().info(
        "chunk %s: %d raw rows -> %d location-hours (%d new, %d updated) in %.2f s",
        window, report.raw_rows, report.location_hours, report.inserted, report.updated, report.seconds,
    )
    return report


chunk_task = task(name="aggregate-chunk", task_run_name="aggregate-chunk {window}", **RETRYING)(run_chunk)
"""run_chunk as one task run, for the hourly job and the backfill alike: retried as a whole when
a connection is lost (the chunk is one transaction, so a retry starts clean); its steps log."""



async def process_chunks(
    source: Database,
    target: Database,
    pieces: list[Window],
    with_alerts: bool = False,
    after_each: Callable[[int, ChunkReport], Awaitable[None]] | None = None,
) -> list[ChunkReport]:
    """Process `pieces`, each one task run (chunk_task), up to IN_FLIGHT at once: reads overlap,
    writes go in order."""
    turns = WriteTurns()

    def start(number: int) -> asyncio.Future:
        return asyncio.ensure_future(chunk_task(source, target, pieces[number], with_alerts, number, turns))

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
