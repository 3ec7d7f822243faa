"""The hourly chunk pipeline, shared by temperature_etl and temperature_backfill.

One chunk reads like the seed's DAG: extract -> aggregate -> write -> verify -> alerts, plain
functions called in that order by run_chunk, each with its log lines; the rules are the domain's
(flows.domain.aggregate, checks, alerts, health: frames and plans), the SQL the store's
(flows.store.hourly, alerts). run_chunk is one task run (chunk_task), retried as a whole when a
connection is lost. What no chunk changes (thresholds, locations, the source's first reading) is
read once per run (RunContext). Both flows run all of it, so the alerts of every hour a flow
rewrites follow its data.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass, field, fields
from datetime import datetime

import polars as pl
from prefect import task
from prefect.logging import get_run_logger

from flows import store
from flows.domain import aggregate, alerts, checks, episodes, health
from flows.domain.backfill import BackfillPlan, plan_backfill
from flows.domain.windows import HOUR, Window
from flows.errors import TargetValidationError
from flows.pipelines.policy import RETRYING, require_tables
from flows.pipelines.streams import WriteTurns
from flows.settings import IN_FLIGHT, coverage_min, notify_hours, plant_limits, plant_now, poll_interval_seconds
from flows.store import Database
from flows.store.schema import alarm_episodes, alarm_mutes, etl_watermark, locations, temperature, temperature_raw, thresholds
from flows.store.schema import alerts as alerts_table


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
    alerts_notified: int = 0  # announcements: new alarm episodes and their escalations
    alarms_opened: int = 0
    alarms_closed: int = 0
    # where the chunk's time went (wall seconds; a chunk's read overlaps the others' writes):
    extract_s: float = 0.0  # the source's aggregation and the rows' checks
    write_s: float = 0.0  # the plan against the stored rows, and the write
    verify_s: float = 0.0  # the stored rows against the computed ones
    alerts_s: float = 0.0  # alerts and alarm episodes, recorded and announced


class StepClock:
    """Wall seconds per step of a chunk: mark(step) adds the time since the last mark (or restart)."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}
        self._last = time.perf_counter()

    def restart(self) -> None:
        self._last = time.perf_counter()

    def mark(self, step: str) -> None:
        now = time.perf_counter()
        self.seconds[f"{step}_s"] = round(self.seconds.get(f"{step}_s", 0.0) + now - self._last, 4)
        self._last = now


ETL_JOB = "temperature-etl"  # the hourly job's watermark (etl_watermark.job_name), extended by the backfill too
SOURCE_TABLES = [temperature_raw]  # what the hourly job and the backfill read
TARGET_TABLES = [temperature, etl_watermark, thresholds, locations, alerts_table, alarm_episodes, alarm_mutes]  # what they read and write


@task(name="check-connections", **RETRYING)
async def check_connections(source: Database, target: Database) -> str:
    """Both databases answer and hold the tables this job needs (checked at the same time);
    returns a line that says so, with their versions, for the flow's log."""
    needs = ((source, SOURCE_TABLES, None), (target, TARGET_TABLES, "target_block (the HQ database)"))
    versions = await asyncio.gather(*(require_tables(*need) for need in needs), return_exceptions=True)
    for failure in (v for v in versions if isinstance(v, BaseException)):
        raise failure  # the source's problem first, whichever answered first
    return "; ".join(f"{db.describe()} answers ({version}), tables present" for (db, _, _), version in zip(needs, versions))


@task(name="plan-backfill", **RETRYING)
async def plan_chunks(source: Database, window: Window, chunk_hours: int | None, horizon: datetime | None) -> BackfillPlan:
    """The backfill's plan (flows.domain.backfill) from the source's first reading (`horizon`, the
    run context's, so the chunks skipped are exactly those the chunks would not judge), its
    estimate of the range's readings, and the throughput of recent backfills on this Prefect server."""
    rows = await store.estimate_raw_rows(source, window)
    return plan_backfill(window, chunk_hours, horizon, rows, await recent_rows_per_second())


async def recent_rows_per_second(runs: int = 5) -> float | None:
    """Readings per second of the last `runs` backfills run in one process (their summary
    artifacts' totals); None when there are none, or the API cannot say."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey
    from prefect.client.schemas.sorting import ArtifactSort

    try:
        async with get_client() as client:
            found = await client.read_artifacts(
                artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=["temperature-backfill-summary"])),
                sort=ArtifactSort.CREATED_DESC, limit=runs,
            )
    except Exception as exc:  # an estimate is a nicety: never the reason a backfill fails
        get_run_logger().debug("no estimate from recent runs: %s", exc)
        return None
    rows = seconds = 0.0
    for artifact in found:
        table = json.loads(artifact.data) if isinstance(artifact.data, str) else artifact.data
        for total in (r for r in table or [] if isinstance(r, dict) and r.get("window") == "total"):
            rows += float(total.get("raw_rows") or 0)
            seconds += float(total.get("seconds") or 0)
    return rows / seconds if rows and seconds > 0 else None


@dataclass(frozen=True)
class RunContext:
    """What every chunk of a run needs and no chunk changes, read once per run (read_context):
    the source's first reading hour (before it, the source keeps no readings, so a missing hour
    there says nothing), the target's thresholds and locations' expected readings, and the
    plant's settings."""

    horizon: datetime | None
    thresholds: pl.DataFrame
    expected: pl.DataFrame  # health.expected_readings of the target's locations
    limits: dict[str, tuple[float, float]]
    poll_interval_s: float
    coverage_min: float
    notify_hours: float

    def judged(self, window: Window) -> Window | None:
        """The part of `window` at or after the source's first reading: the hours judged by their
        absence (pruned rows, coverage alerts); None when the source holds nothing from there on."""
        if self.horizon is None or self.horizon >= window.end:
            return None
        return Window(max(self.horizon, window.start), window.end)


@task(name="read-run-context", **RETRYING)
async def read_context(source: Database, target: Database) -> RunContext:
    """The source's first reading, the target's thresholds and locations, the plant's settings."""
    horizon, thresholds, locations_ = await asyncio.gather(
        store.source_horizon(source), store.read_thresholds(target), store.read_locations(target)
    )
    interval = poll_interval_seconds()
    return RunContext(
        horizon, thresholds, health.expected_readings(locations_, interval), plant_limits(), interval,
        coverage_min(), notify_hours(),
    )


async def extract(source: Database, window: Window, limits: dict[str, tuple[float, float]]) -> tuple[pl.DataFrame, pl.DataFrame, int]:
    """The window's readings from the source, aggregated there where it can (store.read_partial_hourly),
    else the raw rows (SQLite, or some value that is not finite, outside the physical `limits` or
    overflows a sum: the raw rows name the culprits). Returns (hourly rows, bad raw values, raw rows read)."""
    started = time.perf_counter()
    partial = await store.read_partial_hourly(source, window)
    if partial is not None and aggregate.partial_is_plausible(partial, limits):
        hourly, bad, count, how = aggregate.finish_partial(partial), pl.DataFrame(), int(partial["sample_count"].sum() or 0), "aggregated in the source"
    else:
        raw = await store.read_raw(source, window)
        bad = checks.bad_raw_values(raw, limits)
        hourly, count, how = aggregate.hourly(aggregate.without_hours_of(raw, bad)), raw.height, "raw rows"
    get_run_logger().info("read %d raw rows of %s from %s (%s) in %.2f s", count, window, source.describe(), how, time.perf_counter() - started)
    broken = checks.bad_hourly_values(hourly)
    if broken.height:
        raise TargetValidationError(checks.describe(broken, f"aggregated rows of {window} break an invariant"))
    return hourly, bad, count


async def write_hours(
    target: Database, hourly: pl.DataFrame, window: Window, judged: Window | None, spare: pl.DataFrame
) -> tuple[aggregate.HourlyPlan, pl.DataFrame | None]:
    """Make the target's rows of `window` equal `hourly`, in one transaction (aggregate.plan_hourly:
    unchanged rows are left alone; in the `judged` part, rows whose readings were all deleted at
    the source are removed, but the `spare` ones). Returns the plan carried out and, where the
    write could tell, the rows the database holds after it (store.write_hourly)."""
    prune_from = judged.start if judged is not None else None
    done, stored = await store.write_hourly(target, window, lambda stored: aggregate.plan_hourly(hourly, stored, prune_from, spare), plant_now())
    get_run_logger().info(
        "%s: %d inserted, %d updated, %d unchanged, %d removed", target.describe(), done.inserted, done.updated, done.unchanged, done.removed,
    )
    return done, stored


async def verify_stored_hours(target: Database, hourly: pl.DataFrame, window: Window, stored: pl.DataFrame | None = None) -> None:
    """The target holds every computed location-hour, with the computed values: checked on
    `stored`, the rows the write saw the database hold (its RETURNING rows and the rows it left
    alone), else read back after the commit; either way what the database holds, its types and
    triggers applied."""
    how = "as the write returned them"
    if stored is None:
        stored, how = await store.read_hourly(target, window), "read back"
    missing = checks.missing_keys(hourly, stored)
    if missing.height:
        raise TargetValidationError(checks.describe(missing, f"location-hours missing from {target.describe()}"))
    written = stored.join(hourly.select(aggregate.KEYS), on=list(aggregate.KEYS), how="semi")
    differs = checks.differing_rows(written, hourly)
    if differs.height:
        raise TargetValidationError(checks.describe(differs, f"location-hours in {target.describe()} differ from what was computed"))
    broken = checks.bad_hourly_values(written)
    if broken.height:
        raise TargetValidationError(checks.describe(broken, f"rows in {target.describe()} break an invariant"))
    get_run_logger().info("verified %d location-hours of %s (%s)", written.height, window, how)


EVENTS = {health.COVERAGE: "montrg.coverage.low"}  # other measures: montrg.threshold.breached


def _stamp(value: object) -> object:
    return value.isoformat() if isinstance(value, datetime) else value


async def evaluate_alerts(
    target: Database, hourly: pl.DataFrame, ctx: RunContext, judged: Window, spare: pl.DataFrame, window: Window
) -> tuple[health.AlertPlan, episodes.EpisodePlan]:
    """Compare the hours just written with the active thresholds and with their expected readings;
    record every level breached in `alerts` (one row per location, hour, measure and level), then
    bring the alarm episodes up to date (flows.domain.episodes: consecutive bad hours of a location
    and measure are one alarm) and announce each new episode, or its rise to a higher level, as a
    Prefect event about `montrg.location.<loc_id>`: `montrg.threshold.breached` for a measure,
    `montrg.coverage.low` for missing readings; an episode that closes emits `montrg.alarm.closed`.

    Only the `judged` hours (from the source's first reading on) are evaluated; coverage is judged
    for the hours that have ended; hours older than MONTRG_NOTIFY_HOURS are recorded without an event.
    """
    from prefect.events import emit_event

    now = plant_now()
    judged_hours = health.hours_of(judged.start, judged.end)
    gaps = health.coverage_alerts(hourly, ctx.expected, [h for h in judged_hours if h + HOUR <= now], ctx.coverage_min)
    found = pl.concat([alerts.breaches(hourly, ctx.thresholds), gaps], how="vertical_relaxed")
    active = ctx.expected.filter(pl.col("is_active")).select("loc_id")
    inactive = set(ctx.expected.filter(~pl.col("is_active"))["loc_id"].to_list())

    def plan_episodes(decided: health.AlertPlan, facts: store.EpisodeFacts) -> episodes.EpisodePlan:
        live = pl.DataFrame([(e.loc_id, e.measure) for e in facts.known if e.live], schema=["loc_id", "measure"], orient="row")
        bad, normal = episodes.hour_states(decided.current, hourly, active, judged_hours, now, facts.mutes, live)
        return episodes.plan_episodes(
            facts.known, bad, normal, judged.start, judged.end, facts.last_bad_before, inactive,
            episodes.muted_now(facts.mutes, now), now - ctx.notify_hours * HOUR,
        )

    done, alarms = await store.record_alerts(
        target, judged.start, judged.end - HOUR, lambda recorded: health.plan_alerts(found, recorded, spare), plan_episodes, now
    )
    for a in alarms.announcements:
        e = a.episode
        emit_event(
            event=EVENTS.get(e.measure, "montrg.threshold.breached"),
            resource=_location(e.loc_id),
            payload={
                "episode_id": e.episode_id, "loc_id": e.loc_id, "alert_time": a.hour.isoformat(), "measure": e.measure,
                "level": a.level, "measured_value": a.measured_value, "threshold_min": a.threshold_min,
                "threshold_max": a.threshold_max, "message": a.message, "replaces": a.replaces,
                "escalated": a.replaces is not None, "first_hour": e.first_hour.isoformat(),
            },
        )
    for e in alarms.closed:
        emit_event(event="montrg.alarm.closed", resource=_location(e.loc_id), payload={
            k: _stamp(getattr(e, k)) for k in ("episode_id", "loc_id", "measure", "first_hour", "last_hour", "peak_level", "close_reason")
        })
    get_run_logger().info(
        "%d alert levels in %s (%d of them coverage): %d opened, %d resolved; alarms: %d new, %d closed, %d announced",
        found.height, window, gaps.height, done.opened.height, len(done.resolve), len(alarms.new), len(alarms.closed),
        len(alarms.announcements),
    )
    return done, alarms


def _location(loc_id: str) -> dict[str, str]:
    return {"prefect.resource.id": f"montrg.location.{loc_id}", "prefect.resource.name": str(loc_id)}


async def run_chunk(
    source: Database,
    target: Database,
    window: Window,
    ctx: RunContext,
    number: int = 0,
    turns: WriteTurns | None = None,
) -> ChunkReport:
    """extract -> aggregate -> write -> verify -> alerts for one window; returns what it did.

    With `turns`, the read waits for a reading slot and the write for chunk `number`'s turn. The target
    is read once, by the write before it writes (to write only the rows that changed); the
    verification checks what the write saw the database hold after it (PostgreSQL's RETURNING
    beside the rows left alone), or reads the rows back after the commit where the upsert cannot
    return them. The report says where the chunk's time went (StepClock)."""
    started = time.perf_counter()
    steps = StepClock()
    judged = ctx.judged(window)
    async with turns.reading() if turns else contextlib.nullcontext():
        steps.restart()  # the wait for a reading slot counts as no step
        hourly, bad, raw_rows = await extract(source, window, ctx.limits)
    steps.mark("extract")
    async with turns.turn(number) if turns else contextlib.nullcontext():
        steps.restart()  # the wait for this chunk's turn to write counts as no step
        if raw_rows == 0 and judged is None:
            get_run_logger().info("no raw rows in %s, none after it either: nothing to write or judge", window)
            return ChunkReport(str(window), 0, 0, 0, 0, 0, round(time.perf_counter() - started, 3))
        hourly = health.with_coverage(hourly, ctx.expected, ctx.poll_interval_s)
        spare = aggregate.left_out_hours(bad) if bad.height else pl.DataFrame(schema={"loc_id": pl.String, "hour": pl.Datetime("us")})
        done, stored = await write_hours(target, hourly, window, judged, spare)
        steps.mark("write")
        await verify_stored_hours(target, hourly, window, stored)
        steps.mark("verify")
        alerted = await evaluate_alerts(target, hourly, ctx, judged, spare, window) if judged is not None else None
        steps.mark("alerts")
    if bad.height:
        raise store.SourceDataError(
            f"{source.describe()}: "
            + checks.describe(
                bad.with_columns(hour=pl.col("capture_dt").dt.truncate("1h")),
                f"raw values of {window} cannot be averaged; their location-hours were left out "
                f"(the other {hourly.height} were written): correct or delete these readings and run it again",
            )
        )
    report = ChunkReport(
        str(window), raw_rows, hourly.height, done.inserted, done.updated, done.unchanged,
        round(time.perf_counter() - started, 3), done.removed,
        *(_alert_counts(*alerted) if alerted else (0, 0, 0, 0, 0)), **steps.seconds,
    )
    get_run_logger().info(
        "chunk %s: %d raw rows -> %d location-hours (%d new, %d updated, %d removed) in %.2f s",
        window, report.raw_rows, report.location_hours, report.inserted, report.updated, report.removed, report.seconds,
    )
    return report


def _alert_counts(done: health.AlertPlan, alarms: episodes.EpisodePlan) -> tuple[int, int, int, int, int]:
    return done.opened.height, len(done.resolve), len(alarms.announcements), len(alarms.new), len(alarms.closed)


chunk_task = task(name="aggregate-chunk", task_run_name="aggregate-chunk {window}", **RETRYING)(run_chunk)
"""run_chunk as one task run, for the hourly job and the backfill alike: retried as a whole when
a connection is lost (the chunk is one transaction, so a retry starts clean); its steps log."""



async def process_chunks(
    source: Database,
    target: Database,
    pieces: list[Window],
    after_each: Callable[[int, ChunkReport], Awaitable[None]] | None = None,
    ctx: RunContext | None = None,
) -> list[ChunkReport]:
    """Process `pieces`, each one task run (chunk_task), up to IN_FLIGHT at once: IN_FLIGHT - 1
    read (aggregate in the source) at once while one writes, writes go in order. (Without the
    read limit a third aggregation started whenever the oldest chunk wrote: three on two cores
    slowed the 10M backfill by 6%, alternating runs 2.35-2.56 s against 2.26-2.39 s.) What no
    chunk changes is read once, before the first (read_context), unless the caller has read it
    (`ctx`)."""
    turns = WriteTurns(readers=IN_FLIGHT - 1)
    ctx = ctx or await read_context(source, target)

    def start(number: int) -> asyncio.Future:
        return asyncio.ensure_future(chunk_task(source, target, pieces[number], ctx, number, turns))

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
