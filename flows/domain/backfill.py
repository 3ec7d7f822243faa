"""What a backfill will cost, before it starts: its chunks, the ones it can skip, the rows it reads,
how long it may take. Pure: the facts come in (the source's first reading, a row estimate, the
throughput of recent runs), a plan goes out.

A range is cut into chunks of `chunk_hours` (one read, one transaction, one task run each). At most
MAX_CHUNKS chunks: a plan above it is refused with a chunk size that fits. Without a chunk size,
one is chosen from the range and its rows (about TARGET_CHUNK_ROWS readings a chunk, whole days
from a day on). Chunks that end before the source's first reading hold no readings and judge no
hour (flows/pipelines/hourly.py: RunContext.judged), so they are skipped without a task run.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import date, datetime, tzinfo

from flows.domain.windows import Window, check_hours, check_range, chunks, parse_range

MAX_CHUNKS = 10_000  # chunks one backfill may have (each is a task run on the Prefect server)
MAX_CHUNK_HOURS = 24 * 31  # 744: a chunk is read at once; a month at most
DEFAULT_CHUNK_HOURS = 24
TARGET_CHUNK_ROWS = 5_000_000  # readings a chosen chunk size aims at (a few hundred MB on the raw path)
# The timeout: a fixed start-up allowance, then per chunk that runs and per million readings read;
# generous against the measured 1.5M readings/s (docs/performance.md), so only a stuck run hits it.
TIMEOUT_BASE_S, TIMEOUT_PER_CHUNK_S, TIMEOUT_PER_MILLION_ROWS_S = 600.0, 30.0, 60.0


def fitting_chunk_hours(hours: int) -> int:
    """The smallest chunk size (whole days from a day on) that cuts `hours` into at most MAX_CHUNKS."""
    need = max(1, math.ceil(hours / MAX_CHUNKS))
    return min(need if need < 24 else 24 * math.ceil(need / 24), MAX_CHUNK_HOURS)


def check_chunk_count(window: Window, chunk_hours: int) -> None:
    """Raise, proposing a chunk size that fits, when `chunk_hours` cuts `window` into more than MAX_CHUNKS."""
    count = math.ceil(window.hours / chunk_hours)
    if count > MAX_CHUNKS:
        fit = fitting_chunk_hours(window.hours)
        raise ValueError(
            f"chunk_hours={chunk_hours} cuts {window} ({window.hours:,} hours) into {count:,} chunks, more than "
            f"the limit of {MAX_CHUNKS:,}; give chunk_hours={fit} ({math.ceil(window.hours / fit):,} chunks) "
            "or more, or leave chunk_hours empty to have it chosen"
        )


def choose_chunk_hours(hours: int, rows: int | None) -> int:
    """A chunk size for `hours` holding about `rows` readings: DEFAULT_CHUNK_HOURS, smaller where
    a day holds more than TARGET_CHUNK_ROWS, never so small that the chunks exceed MAX_CHUNKS."""
    size = DEFAULT_CHUNK_HOURS
    if rows and hours:
        size = max(1, min(MAX_CHUNK_HOURS, int(TARGET_CHUNK_ROWS / (rows / hours))))
        size = min(size, DEFAULT_CHUNK_HOURS) if size < 24 else DEFAULT_CHUNK_HOURS
    return max(size, fitting_chunk_hours(hours))


@dataclass(frozen=True)
class BackfillPlan:
    window: Window
    chunk_hours: int
    chosen: bool  # chunk_hours was chosen, not given
    pieces: list[Window]  # the chunks that run
    skipped: int  # chunks before the source's first reading: nothing to read or judge
    source_rows: int | None  # readings in the range (the database's estimate)
    rows_per_second: float | None  # recent runs' throughput, when there are some

    @property
    def chunks(self) -> int:
        return len(self.pieces) + self.skipped

    @property
    def timeout_seconds(self) -> float:
        """The longest the run may take: beyond it, it stops (the chunks done are kept)."""
        return TIMEOUT_BASE_S + TIMEOUT_PER_CHUNK_S * len(self.pieces) + TIMEOUT_PER_MILLION_ROWS_S * (self.source_rows or 0) / 1e6

    @property
    def estimate_seconds(self) -> float | None:
        if not self.rows_per_second or self.source_rows is None:
            return None
        return self.source_rows / self.rows_per_second

    def describe(self) -> str:
        """The plan in one line, for the run's log."""
        size = f"{self.chunk_hours} h{' (chosen)' if self.chosen else ''}"
        skipped = f", {self.skipped:,} before the source's first reading skipped" if self.skipped else ""
        rows = "rows unknown" if self.source_rows is None else f"about {self.source_rows:,} readings in the source"
        took = self.estimate_seconds
        eta = f", about {took:,.0f} s at the {self.rows_per_second:,.0f} readings/s of recent runs" if took is not None else ""
        return (f"plan: {self.window} (plant time), {self.window.hours:,} hours in {self.chunks:,} chunks of {size}: "
                f"{len(self.pieces):,} to run{skipped}; {rows}{eta}; timeout {self.timeout_seconds:,.0f} s")

    def table(self) -> list[dict[str, object]]:
        """The plan as the rows of an artifact."""
        took = self.estimate_seconds
        return [
            {"item": "range (plant time)", "value": str(self.window)},
            {"item": "hours", "value": f"{self.window.hours:,}"},
            {"item": "chunk_hours", "value": f"{self.chunk_hours}{' (chosen)' if self.chosen else ''}"},
            {"item": "chunks", "value": f"{self.chunks:,} (limit {MAX_CHUNKS:,})"},
            {"item": "chunks to run", "value": f"{len(self.pieces):,}"},
            {"item": "chunks skipped (before the source's first reading)", "value": f"{self.skipped:,}"},
            {"item": "readings in the source (estimate)", "value": "unknown" if self.source_rows is None else f"{self.source_rows:,}"},
            {"item": "estimated time", "value": "no recent runs to go by" if took is None else f"{took:,.0f} s"},
            {"item": "timeout", "value": f"{self.timeout_seconds:,.0f} s"},
        ]


def plan_backfill(
    window: Window, chunk_hours: int | None, horizon: datetime | None, source_rows: int | None, rows_per_second: float | None
) -> BackfillPlan:
    """The plan of a backfill over `window` (chunk_hours None: chosen), the source's first reading
    hour being `horizon` (None: the source holds none)."""
    chosen = chunk_hours is None
    size = choose_chunk_hours(window.hours, source_rows) if chunk_hours is None else chunk_hours
    check_hours(size, "chunk_hours", 1, MAX_CHUNK_HOURS)
    check_chunk_count(window, size)
    pieces = chunks(window, size)
    run = [p for p in pieces if horizon is not None and p.end > horizon]
    return BackfillPlan(window, size, chosen, run, len(pieces) - len(run), source_rows, rows_per_second)


def backfill_plan(
    start: date | datetime | str, end: date | datetime | str, chunk_hours: int | None, max_parallel: int,
    chunk_timeout_minutes: int, now: datetime, tz: tzinfo, earliest: datetime,
) -> tuple[Window, list[Window]]:
    """A backfill's window and chunks, its parameters checked by name before any work (the range
    rules of windows.parse_range; at most MAX_CHUNKS chunks of 1..744 hours). With
    chunk_hours None, the chunks are of a day (or more, to fit); the flow may choose another size
    from the source's rows."""
    window = parse_range(start, end, now, tz, earliest)
    size = max(DEFAULT_CHUNK_HOURS, fitting_chunk_hours(window.hours)) if chunk_hours is None else chunk_hours
    check_hours(size, "chunk_hours", 1, MAX_CHUNK_HOURS)
    check_chunk_count(window, size)
    check_range(max_parallel, "max_parallel", 1, 64, "chunks")
    check_range(chunk_timeout_minutes, "chunk_timeout_minutes", 1, 7 * 24 * 60, "minutes")
    return window, chunks(window, size)
