"""Alarm episodes, the pure part: consecutive bad hours of one location and measure are one alarm.

The per-hour alerts (flows.domain.health) say which hours are bad; an episode is what a person
acts on. Per (location, measure), looking at the judged hours in time order:

- a bad hour (an open alert at any level) that belongs to no episode opens one, and it is
  announced at its highest level (hours older than MONTRG_NOTIFY_HOURS: recorded, not announced);
- the bad hours that follow join the open episode, as long as no *normal* hour came between them;
  an hour whose level rises above every level the episode announced announces again (an
  escalation; an acknowledged episode becomes open again);
- a normal hour after its last bad hour closes it ("back to normal"). Normal means the data is
  back: for a threshold measure, an ended hour with that measure's readings and no breach; for
  coverage, an ended hour at or above MONTRG_COVERAGE_MIN. An hour without data is not normal;
- late data never splits an episode already raised: a repaired hour inside it stops being bad and
  nothing more; an episode whose every bad hour was repaired closes ("repaired by late data");
- hours of a muted location (montrg alarms mute) neither open, extend nor close an episode;
- a deactivated location's open episodes close.

Pure: frames and Episode values in, an EpisodePlan out; flows.store.episodes carries it out.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta

import polars as pl

from flows.domain.health import COVERAGE, LEVEL_RANK
from flows.domain.measures import MEASURES

HOUR = timedelta(hours=1)
LIVE = ("open", "acknowledged")  # the states of an alarm that still needs a person
STATES = (*LIVE, "closed")
PAIR = ["loc_id", "measure"]


@dataclass
class Episode:
    """One alarm: the bad hours of a location and measure from `first_hour` to `last_hour`."""

    episode_id: int | None
    loc_id: str
    measure: str
    first_hour: datetime
    last_hour: datetime
    peak_level: str
    peak_value: float | None
    peak_hour: datetime | None = None
    message: str | None = None
    notified_level: str | None = None
    state: str = "open"
    closed_hour: datetime | None = None
    close_reason: str | None = None
    closed: bool = field(default=False, compare=False)  # closed by this plan
    changed: bool = field(default=False, compare=False)  # changed by this plan

    @property
    def live(self) -> bool:
        return self.state in LIVE

    def covers(self, hour: datetime) -> bool:
        return self.first_hour <= hour <= self.last_hour

    def close(self, reason: str, hour: datetime | None = None) -> None:
        self.state, self.close_reason, self.closed_hour, self.closed, self.changed = "closed", reason, hour, True, True


@dataclass(frozen=True)
class Announcement:
    """An episode announced at `level` (its first, or an escalation replacing `replaces`), from
    the per-hour alert of `hour` that reached it."""

    episode: Episode
    hour: datetime
    level: str
    measured_value: float | None
    threshold_min: float | None
    threshold_max: float | None
    message: str | None
    replaces: str | None


@dataclass
class EpisodePlan:
    """What to write into `alarm_episodes`: `new` episodes, `changed` known ones (their new spans,
    peaks, states), the `announcements` to emit, and the episodes this plan `closed`."""

    new: list[Episode]
    changed: list[Episode]
    announcements: list[Announcement]

    @property
    def closed(self) -> list[Episode]:
        return [e for e in [*self.new, *self.changed] if e.closed]


def _rank(level: str | None) -> int:
    return LEVEL_RANK.get(level or "", 0)


def _excess(measure: str, value: float | None, lo: float | None, hi: float | None) -> float:
    """How far `value` lies outside its limits (coverage: below the minimum share)."""
    if value is None:
        return 0.0
    if measure == COVERAGE:
        return (lo or 0.0) - value
    return max(value - hi if hi is not None else float("-inf"), lo - value if lo is not None else float("-inf"), 0.0)


def hour_states(
    current: pl.DataFrame,
    hourly: pl.DataFrame,
    active: pl.DataFrame,
    judged: list[datetime],
    now: datetime,
    mutes: pl.DataFrame,
    live: pl.DataFrame,
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """The bad and the normal hours of the `judged` hours, for episodes.

    `current`: the open alerts of those hours after this evaluation (keys, measured_value,
    threshold_min, threshold_max, message); `hourly`: their hourly rows (hour, <measure>_max);
    `active`: the active locations (loc_id); `mutes`: (loc_id, starts_dt, until_dt); `live`: the
    (loc_id, measure) of the live episodes. Returns (bad: one row per location, measure and hour at
    its highest level; normal: loc_id, measure, hour), both without the muted hours, and normal
    only for the pairs that have a bad hour or a live episode (no other pair's normal hour matters).
    """
    bad = (
        current.rename({"alert_time": "hour"})
        .with_columns(pl.col("level").replace_strict(LEVEL_RANK, default=0, return_dtype=pl.Int32).alias("_rank"))
        .sort(["_rank", "measured_value"], descending=[True, False])
        .unique(subset=[*PAIR, "hour"], keep="first")
        .drop("_rank")
    )
    pairs = pl.concat([bad.select(PAIR), live.select(PAIR)]).unique()
    ended = [h for h in judged if h + HOUR <= now]
    hours = pl.DataFrame({"hour": ended}, schema={"hour": pl.Datetime("us")})
    with_data = pl.concat([
        hourly.filter(pl.col(f"{m}_max").is_not_null()).select("loc_id", "hour", pl.lit(m).alias("measure"))
        for m in MEASURES
    ]).join(hours, on="hour", how="semi")
    covered = pairs.filter(pl.col("measure") == COVERAGE).join(active.select("loc_id"), on="loc_id", how="semi").join(hours, how="cross")
    normal = (
        pl.concat([with_data.select(*PAIR, "hour"), covered.select(*PAIR, "hour")])
        .join(pairs, on=PAIR, how="semi")
        .join(bad.select(*PAIR, "hour"), on=[*PAIR, "hour"], how="anti")
    )
    return _unmuted(bad, mutes), _unmuted(normal, mutes)


def _unmuted(frame: pl.DataFrame, mutes: pl.DataFrame) -> pl.DataFrame:
    """`frame` without the hours (loc_id, hour) that start inside a mute of their location."""
    if mutes.is_empty() or frame.is_empty():
        return frame
    muted = (
        frame.select("loc_id", "hour").unique()
        .join(mutes.select("loc_id", "starts_dt", "until_dt"), on="loc_id")
        .filter((pl.col("hour") + pl.duration(hours=1) > pl.col("starts_dt")) & (pl.col("hour") < pl.col("until_dt")))
        .select("loc_id", "hour")
    )
    return frame.join(muted, on=["loc_id", "hour"], how="anti")


def plan_episodes(
    known: list[Episode],
    bad: pl.DataFrame,
    normal: pl.DataFrame,
    start: datetime,
    end: datetime,
    last_bad_before: dict[tuple[str, str], datetime],
    inactive: set[str],
    muted: dict[str, str],
    notify_since: datetime,
) -> EpisodePlan:
    """Bring the `known` episodes (the live ones, and any whose span meets [start, end)) up to date
    with the bad and normal hours judged in [start, end) (hour_states), by the rule of this module.

    `last_bad_before`: per (loc_id, measure) of a live episode that began before `start`, its last
    bad hour before `start` (None: none is left), for when the hours in range repaired its tail;
    `inactive`: the deactivated locations; `muted`: the locations muted now, with the mute's words
    (muted_now): their live episodes close."""
    episodes = [replace(e) for e in known]
    for e in episodes:
        if e.live and e.loc_id in inactive:
            e.close("location deactivated")
        elif e.live and e.loc_id in muted:
            e.close(muted[e.loc_id])
    bad = bad.filter(~pl.col("loc_id").is_in(list(inactive)))
    by_pair: dict[tuple[str, str], list[Episode]] = {}
    for e in episodes:
        by_pair.setdefault((e.loc_id, e.measure), []).append(e)
    bad_rows: dict[tuple[str, str], list[dict]] = {}
    for row in bad.sort("hour").iter_rows(named=True):
        bad_rows.setdefault((row["loc_id"], row["measure"]), []).append(row)
    normal_hours: dict[tuple[str, str], list[datetime]] = {}
    for loc, measure, hour in normal.select(*PAIR, "hour").sort("hour").iter_rows():
        normal_hours.setdefault((loc, measure), []).append(hour)

    new: list[Episode] = []
    announcements: list[Announcement] = []
    for pair in set(by_pair) | set(bad_rows):
        rows = bad_rows.get(pair, [])
        mine = by_pair.get(pair, [])
        _repair(mine, {r["hour"] for r in rows}, start, end, last_bad_before.get(pair))
        _walk(pair, mine, rows, normal_hours.get(pair, []), end, notify_since, new, announcements)
    return EpisodePlan(new, [e for e in episodes if e.changed], announcements)


def _repair(mine: list[Episode], bad_hours: set[datetime], start: datetime, end: datetime, before: datetime | None) -> None:
    """Shrink each live episode to the bad hours it still has where the range shows them; close
    the ones left without any ("repaired by late data")."""
    for e in (e for e in mine if e.live and e.first_hour < end and e.last_hour >= start):
        inside = sorted(h for h in bad_hours if e.covers(h))
        if e.last_hour >= end:  # its end lies past the range: only its start can move
            if e.first_hour >= start and inside and inside[0] != e.first_hour:
                e.first_hour, e.changed = inside[0], True
            continue
        if e.first_hour >= start:
            if not inside:
                e.close("repaired by late data")
            elif (inside[0], inside[-1]) != (e.first_hour, e.last_hour):
                e.first_hour, e.last_hour, e.changed = inside[0], inside[-1], True
        elif inside:
            if inside[-1] != e.last_hour:
                e.last_hour, e.changed = inside[-1], True
        elif before is None:
            e.close("repaired by late data")
        elif before != e.last_hour:
            e.last_hour, e.changed = before, True


def _walk(
    pair: tuple[str, str],
    mine: list[Episode],
    rows: list[dict],
    normal: list[datetime],
    end: datetime,
    notify_since: datetime,
    new: list[Episode],
    announcements: list[Announcement],
) -> None:
    """Walk the pair's bad and normal hours in time order: join, open, escalate and close."""
    events = sorted([(r["hour"], 1, r) for r in rows] + [(h, 0, None) for h in normal], key=lambda x: (x[0], x[1]))
    for hour, is_bad, row in events:
        live = [e for e in mine if e.live and e.first_hour <= hour]
        current = max(live, key=lambda e: e.first_hour, default=None)
        if not is_bad:
            if current is not None and hour > current.last_hour:
                current.close("back to normal", hour)
            continue
        holder = next((e for e in mine if e.covers(hour)), None)
        if holder is not None and not holder.live:
            continue  # history: an hour of an episode already closed
        if holder is None and current is not None:
            holder, current.last_hour, current.changed = current, hour, True
        elif holder is not None and current is not None and holder is not current:
            first, later = sorted((holder, current), key=lambda e: e.first_hour)
            _merge(first, later)  # no normal hour came between them: one alarm
            holder = first
        if holder is None:
            holder = _joins_next(mine, hour, normal, end)
        if holder is None:
            holder = Episode(None, pair[0], pair[1], hour, hour, row["level"], row["measured_value"], hour, row["message"])
            holder.changed = True
            mine.append(holder)
            new.append(holder)
        _account(holder, row, notify_since, announcements)


def _joins_next(mine: list[Episode], hour: datetime, normal: list[datetime], end: datetime) -> Episode | None:
    """A live episode that starts after `hour`, with no normal hour between and no unjudged hour
    (it starts within the range): `hour` is its new first hour (a backfill of older hours)."""
    later = [e for e in mine if e.live and hour < e.first_hour <= end]
    nxt = min(later, key=lambda e: e.first_hour, default=None)
    if nxt is None or any(hour < h < nxt.first_hour for h in normal):
        return None
    nxt.first_hour, nxt.changed = hour, True
    return nxt


def _merge(into: Episode, other: Episode) -> None:
    into.last_hour = max(into.last_hour, other.last_hour)
    if _rank(other.peak_level) > _rank(into.peak_level):
        into.peak_level, into.peak_value, into.peak_hour, into.message = other.peak_level, other.peak_value, other.peak_hour, other.message
    if _rank(other.notified_level) > _rank(into.notified_level):
        into.notified_level = other.notified_level
    into.changed = True
    other.close(f"merged into episode {into.episode_id}" if into.episode_id else "merged into an earlier episode")


def _account(e: Episode, row: dict, notify_since: datetime, announcements: list[Announcement]) -> None:
    """The bad hour `row` belongs to `e`: its peak, and its announcement when the level rises."""
    level, value = row["level"], row["measured_value"]
    rank, peak = _rank(level), _rank(e.peak_level)
    lo, hi = row["threshold_min"], row["threshold_max"]
    if rank > peak or (rank == peak and _excess(e.measure, value, lo, hi) > _excess(e.measure, e.peak_value, lo, hi)):
        e.peak_level, e.peak_value, e.peak_hour, e.message, e.changed = level, value, row["hour"], row["message"], True
    if row["hour"] >= notify_since and rank > _rank(e.notified_level):
        announcements.append(Announcement(e, row["hour"], level, value, lo, hi, row["message"], e.notified_level))
        e.notified_level, e.changed = level, True
        if e.state == "acknowledged":
            e.state = "open"


def muted_now(mutes: pl.DataFrame, now: datetime) -> dict[str, str]:
    """The locations muted at `now` (mutes: loc_id, starts_dt, until_dt, reason), with the words
    their closed episodes keep."""
    running = mutes.filter((pl.col("starts_dt") <= now) & (pl.col("until_dt") > now)).sort("until_dt")
    return {loc: f"muted until {until:%Y-%m-%d %H:%M}: {reason}"[:200] for loc, until, reason in running.select("loc_id", "until_dt", "reason").iter_rows()}

