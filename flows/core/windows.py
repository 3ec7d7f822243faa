"""Time windows in plant local time: parsing ranges, the hourly job's window, chunking.

All windows are half-open [start, end), hour-aligned and naive (plant local time), the same
convention as `temperature_raw.capture_dt`. Nothing here does I/O.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date, datetime, timedelta, tzinfo

HOUR = timedelta(hours=1)
_DATE_ONLY = re.compile(r"\d{4}-\d{2}-\d{2}")


@dataclass(frozen=True)
class Window:
    """A half-open, hour-aligned range [start, end) of naive plant-local datetimes."""

    start: datetime
    end: datetime

    @property
    def hours(self) -> int:
        return int((self.end - self.start) / HOUR)

    def __str__(self) -> str:
        return f"[{self.start:%Y-%m-%d %H:%M}, {self.end:%Y-%m-%d %H:%M})"


def to_plant_local(value: datetime, tz: tzinfo) -> datetime:
    """A naive plant-local datetime; aware values are converted, naive ones are taken as local.

    Always a plain `datetime` (Prefect hands out pendulum subclasses with other arithmetic).
    """
    if value.tzinfo is not None and value.utcoffset() is not None:
        value = value.astimezone(tz)
    return datetime(*value.timetuple()[:6], value.microsecond)


def floor_hour(value: datetime) -> datetime:
    return value.replace(minute=0, second=0, microsecond=0)


def ceil_hour(value: datetime) -> datetime:
    floored = floor_hour(value)
    return floored if floored == value else floored + HOUR


def check_hours(value: int, name: str, low: int, high: int) -> int:
    """Return `value` if it is an integer in [low, high], else raise naming the parameter."""
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise ValueError(f"{name}={value!r} must be a whole number of hours from {low} to {high}")
    return value


def etl_window(
    hour: datetime | None, scheduled: datetime, lookback_hours: int, tz: tzinfo
) -> Window:
    """The hourly job's window: the target hour plus `lookback_hours` before it.

    The target hour is `hour` truncated to the hour, or, when None, the last full hour before
    `scheduled` (the flow run's scheduled start, not the wall clock).
    """
    if hour is None:
        target = floor_hour(to_plant_local(scheduled, tz)) - HOUR
    else:
        target = floor_hour(to_plant_local(hour, tz))
    return Window(target - lookback_hours * HOUR, target + HOUR)


def parse_bound(value: date | datetime | str, name: str) -> date | datetime:
    """A range bound from a date, a datetime, or their ISO text ('2024-01-01', '2024-01-01T05:00')."""
    if isinstance(value, (date, datetime)):
        return value
    if isinstance(value, str):
        text = value.strip()
        try:
            if _DATE_ONLY.fullmatch(text):
                return date.fromisoformat(text)
            return datetime.fromisoformat(text)
        except ValueError:
            pass
    raise ValueError(
        f"{name}={value!r} is neither a date (YYYY-MM-DD) nor a datetime (YYYY-MM-DDTHH:MM[:SS][+09:00])"
    )


def parse_range(
    start: date | datetime | str, end: date | datetime | str, now: datetime, tz: tzinfo
) -> Window:
    """The contract's range rules, as one plant-local window.

    A date is a whole day and an end date is inclusive (2024-01-01..2024-01-31 is all of January);
    datetimes are half-open [start, end) and widened to whole hours (an hour is only ever
    aggregated whole). Aware datetimes are converted to plant time. A range reaching past the last
    full hour before `now` stops there. Raises ValueError, naming the values, when start > end or
    nothing of the range has happened yet.
    """
    first, last = parse_bound(start, "start"), parse_bound(end, "end")
    if isinstance(first, datetime):
        lo = floor_hour(to_plant_local(first, tz))
    else:
        lo = datetime(first.year, first.month, first.day)
    if isinstance(last, datetime):
        hi = ceil_hour(to_plant_local(last, tz))
    else:
        hi = datetime(last.year, last.month, last.day) + timedelta(days=1)
    if lo >= hi:
        raise ValueError(
            f"start={start!s} is not before end={end!s} (plant time {lo:%Y-%m-%d %H:%M} >= "
            f"{hi:%Y-%m-%d %H:%M}); dates are inclusive, datetimes half-open"
        )
    limit = floor_hour(to_plant_local(now, tz))
    if lo >= limit:
        raise ValueError(
            f"start={start!s} is not before the last full hour (plant time {limit:%Y-%m-%d %H:%M}): "
            "nothing in this range has happened yet"
        )
    return Window(lo, min(hi, limit))


def chunks(window: Window, chunk_hours: int) -> list[Window]:
    """`window` cut into consecutive pieces of at most `chunk_hours` hours."""
    step = chunk_hours * HOUR
    out: list[Window] = []
    cursor = window.start
    while cursor < window.end:
        out.append(Window(cursor, min(cursor + step, window.end)))
        cursor += step
    return out
