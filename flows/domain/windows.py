"""Time windows in plant local time: parsing ranges, the hourly job's window, chunking.

All windows are half-open [start, end), hour-aligned and naive (plant local time), the same
convention as `temperature_raw.capture_dt`. Nothing here does I/O.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date, datetime, timedelta, tzinfo

HOUR = timedelta(hours=1)
DAY = timedelta(days=1)
_DATE_ONLY = re.compile(r"\d{4}-\d{2}-\d{2}")
# the documented datetime forms: YYYY-MM-DDTHH:MM[:SS[.ffffff]][Z|+HH:MM] (a space for the T too)
_DATETIME = re.compile(r"\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}(:\d{2}(\.\d{1,6})?)?(Z|[+-]\d{2}:?\d{2})?")
FORMS = "a date 'YYYY-MM-DD' or a datetime 'YYYY-MM-DDTHH:MM[:SS][+09:00]'"


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


def is_repeated(naive: datetime, tz: tzinfo) -> bool:
    """True when the naive plant-local time `naive` happens twice in `tz` (the hour the clocks go
    back: 02:00-03:00 in Europe/Berlin on 2024-10-27). Never in Asia/Seoul."""
    return naive.replace(tzinfo=tz, fold=0).utcoffset() != naive.replace(tzinfo=tz, fold=1).utcoffset()


def floor_hour(value: datetime) -> datetime:
    return value.replace(minute=0, second=0, microsecond=0)


def ceil_hour(value: datetime) -> datetime:
    floored = floor_hour(value)
    return floored if floored == value else floored + HOUR


def check_range(value: int, name: str, low: int, high: int, unit: str) -> int:
    """Return `value` if it is a whole number in [low, high], else raise naming the parameter and
    its unit (True is not a number here)."""
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise ValueError(f"{name}={value!r} must be a whole number of {unit} from {low} to {high}")
    return value


def check_hours(value: int, name: str, low: int, high: int) -> int:
    """check_range in hours."""
    return check_range(value, name, low, high, "hours")


def check_time(value: datetime, name: str, earliest: datetime, latest: datetime) -> datetime:
    """`value` (naive plant time) if it lies in [earliest, latest], else raise naming it: a time a
    plant cannot have (year 1, year 9999) never reaches a query."""
    if not earliest <= value <= latest:
        raise ValueError(
            f"{name}={value.isoformat(' ', 'minutes')} is outside the accepted times {earliest.date().isoformat()} .. "
            f"{latest.isoformat(' ', 'minutes')} "
            "(plant time; the earliest is MONTRG_EARLIEST_DATE, the latest a day after now)"
        )
    return value


def etl_window(
    hour: datetime | None, scheduled: datetime, lookback_hours: int, tz: tzinfo,
    earliest: datetime = datetime(1900, 1, 1), latest: datetime = datetime(9000, 1, 1),
) -> Window:
    """The hourly job's window: the target hour plus `lookback_hours` before it.

    The target hour is `hour` truncated to the hour, or, when None, the last full hour before
    `scheduled` (the flow run's scheduled start, not the wall clock). The window must lie in
    [earliest, latest], else ValueError naming `hour`.
    """
    if hour is None:
        target = floor_hour(to_plant_local(scheduled, tz)) - HOUR
    else:
        target = floor_hour(to_plant_local(check_aware_range(hour), tz))
    check_time(target, "hour", earliest + lookback_hours * HOUR, latest)
    return Window(target - lookback_hours * HOUR, target + HOUR)


def check_aware_range(value: datetime) -> datetime:
    """`value`, unless converting it between zones would overflow (year 1 or 9999 with an offset)."""
    if value.tzinfo is not None and not datetime(2, 1, 1) <= value.replace(tzinfo=None) <= datetime(9998, 12, 31):
        raise ValueError(f"{value.isoformat()} is outside the accepted times")
    return value


def parse_bound(value: date | datetime | str, name: str) -> date | datetime:
    """A range bound from a date, a datetime, or their ISO text ('2024-01-01', '2024-01-01T05:00').

    Only these forms: numbers (which other tools read as Unix seconds), '20240131', week dates
    and the like are refused, naming the value and the accepted forms."""
    if isinstance(value, (date, datetime)):
        return check_aware_range(value) if isinstance(value, datetime) else value
    if isinstance(value, str):
        text = value.strip()
        try:
            if _DATE_ONLY.fullmatch(text):
                return date.fromisoformat(text)
            if _DATETIME.fullmatch(text):
                return check_aware_range(datetime.fromisoformat(text.replace("Z", "+00:00")))
        except ValueError:
            pass
    raise ValueError(f"{name}={value!r} is not {FORMS}")


def parse_hour(value: datetime | str | None, name: str = "hour") -> datetime | None:
    """The hourly job's `hour`: None, a datetime, or its ISO text; nothing else (not a number)."""
    if value is None:
        return None
    parsed = parse_bound(value, name)
    if not isinstance(parsed, datetime):
        raise ValueError(f"{name}={value!r} is a date; give the hour as 'YYYY-MM-DDTHH:MM[+09:00]'")
    return parsed


def parse_range(
    start: date | datetime | str, end: date | datetime | str, now: datetime, tz: tzinfo,
    earliest: datetime = datetime(1900, 1, 1),
) -> Window:
    """The contract's range rules, as one plant-local window.

    A date is a whole day and an end date is inclusive (2024-01-01..2024-01-31 is all of January);
    datetimes are half-open [start, end) and widened to whole hours (an hour is only ever
    aggregated whole). Aware datetimes are converted to plant time. A range reaching past the last
    full hour before `now` stops there. Raises ValueError, naming the values, when start > end or
    nothing of the range has happened yet, and when a bound lies before `earliest` (or the start
    after now + a day).

    Aware datetimes that fall into the repeated hour of a daylight-saving change (e.g.
    [2024-10-27T00:00+00:00, 01:00+00:00) in Europe/Berlin, both 02:00 local) are accepted: the
    range is the plant-local hour that holds them.
    """
    first, last = parse_bound(start, "start"), parse_bound(end, "end")
    latest = floor_hour(to_plant_local(now, tz)) + DAY
    if isinstance(first, datetime):
        lo = floor_hour(to_plant_local(first, tz))
    else:
        lo = datetime(first.year, first.month, first.day)
    check_time(lo, "start", earliest, latest)
    # an end in the future is cut at the last full hour below: only bound it first (9999-12-31)
    if isinstance(last, datetime):
        hi = ceil_hour(min(check_time(to_plant_local(last, tz), "end", earliest, datetime.max), latest))
    else:
        hi = min(check_time(datetime(last.year, last.month, last.day), "end", earliest, datetime.max), latest) + DAY
    aware = all(isinstance(b, datetime) and b.utcoffset() is not None for b in (first, last))
    if aware and lo == hi and first < last:  # both inside a repeated (DST) hour: that hour
        hi = lo + HOUR
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
