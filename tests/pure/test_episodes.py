"""Alarm episodes, the pure part: one alarm per run of bad hours, announced once per rise, closed by
a normal hour, never split by late data, quiet while muted, closed when a location is deactivated.

Each test plays evaluations the way the hourly job makes them (the hour just ended and a look-back)
against a little store of episodes kept between them, as the database would."""

from __future__ import annotations

from datetime import datetime, timedelta

import polars as pl

from flows.domain import episodes
from flows.domain.episodes import Episode

T0 = datetime(2024, 3, 1, 0)
HOUR = timedelta(hours=1)
NO_MUTES = pl.DataFrame(schema={"loc_id": pl.String, "starts_dt": pl.Datetime("us"), "until_dt": pl.Datetime("us"), "reason": pl.String})


class Plant:
    """The hours' facts of one location's temperature or coverage, and the episodes recorded so far."""

    def __init__(self, measure: str = "coverage") -> None:
        self.measure = measure
        self.levels: dict[datetime, str | None] = {}  # hour -> level breached (None: normal); absent: no data
        self.store: dict[int, Episode] = {}
        self.announced: list[tuple[int, str, str | None]] = []
        self.mutes = NO_MUTES
        self.inactive: set[str] = set()

    def set(self, first: int, last: int, level: str | None) -> None:
        for n in range(first, last + 1):
            self.levels[T0 + n * HOUR] = level

    def evaluate(self, start: int, end: int, now: int | None = None, notify_since: int = 0) -> episodes.EpisodePlan:
        """Judge the hours [start, end) at hour `now` (default: end)."""
        now_t = T0 + (end if now is None else now) * HOUR
        hours = [T0 + n * HOUR for n in range(start, end)]
        current = pl.DataFrame(
            [("L1", h, self.measure, lvl, 0.1 if self.measure == "coverage" else 40.0, 0.8 if self.measure == "coverage" else None,
              None if self.measure == "coverage" else 30.0, f"{h:%H}:00 {lvl}")
             for h in hours if (lvl := self.levels.get(h)) is not None],
            schema={"loc_id": pl.String, "alert_time": pl.Datetime("us"), "measure": pl.String, "level": pl.String,
                    "measured_value": pl.Float64, "threshold_min": pl.Float64, "threshold_max": pl.Float64, "message": pl.String},
            orient="row",
        )
        with_data = [h for h in hours if h in self.levels]
        hourly = pl.DataFrame({"loc_id": ["L1"] * len(with_data), "hour": with_data,
                               **{f"{m}_max": [20.0] * len(with_data) for m in ("temperature", "humidity", "pcv_temperature")}},
                              schema_overrides={"hour": pl.Datetime("us")})
        known = [e for e in self.store.values() if e.live or (e.first_hour < hours[-1] + HOUR and e.last_hour >= hours[0])]
        live = pl.DataFrame([(e.loc_id, e.measure) for e in known if e.live], schema=["loc_id", "measure"], orient="row")
        active = pl.DataFrame({"loc_id": [] if "L1" in self.inactive else ["L1"]}, schema={"loc_id": pl.String})
        bad, normal = episodes.hour_states(current, hourly, active, hours, now_t, self.mutes, live)
        first = hours[0]
        last_bad = {}
        for e in known:
            if e.live and e.first_hour < first <= e.last_hour:
                before = [h for h, lvl in self.levels.items() if lvl is not None and e.first_hour <= h < first]
                if before:
                    last_bad[(e.loc_id, e.measure)] = max(before)
        plan = episodes.plan_episodes(known, bad, normal, first, hours[-1] + HOUR, last_bad, self.inactive,
                                      episodes.muted_now(self.mutes, now_t), T0 + notify_since * HOUR)
        for e in plan.new:
            e.episode_id = len(self.store) + 1
        for e in [*plan.new, *plan.changed]:
            self.store[e.episode_id] = e
        self.announced += [(a.episode.episode_id, a.level, a.replaces) for a in plan.announcements]
        return plan

    def hourly_runs(self, first: int, last: int, lookback: int = 3) -> None:
        """The hourly job at the end of each hour first..last, with its look-back."""
        for n in range(first, last + 1):
            self.evaluate(max(n - lookback, 0), n + 1)

    def spans(self) -> list[tuple[int, int, str, str | None]]:
        def n(h: datetime) -> int:
            return int((h - T0) / HOUR)
        return [(n(e.first_hour), n(e.last_hour), e.state, e.close_reason) for e in sorted(self.store.values(), key=lambda e: e.first_hour)]


def test_a_sensor_silent_for_30_hours_is_one_alarm_announced_once():
    plant = Plant()
    plant.set(0, 4, None)
    plant.set(5, 34, "red")
    plant.hourly_runs(0, 34)
    assert plant.spans() == [(5, 34, "open", None)]
    assert plant.announced == [(1, "red", None)]
    plant.set(35, 36, None)  # it speaks again: the first full normal hour closes it
    plant.hourly_runs(35, 36)
    assert plant.spans() == [(5, 34, "closed", "back to normal")]
    assert plant.store[1].closed_hour == T0 + 35 * HOUR
    assert plant.announced == [(1, "red", None)]


def test_a_breach_rising_yellow_to_red_announces_twice_and_closes_once_normal():
    plant = Plant("temperature")
    plant.set(0, 1, None)
    plant.set(2, 3, "yellow")
    plant.set(4, 5, "red")
    plant.set(6, 6, "yellow")  # a fall is recorded, not announced
    plant.set(7, 8, None)
    plant.hourly_runs(0, 8)
    assert plant.spans() == [(2, 6, "closed", "back to normal")]
    assert plant.announced == [(1, "yellow", None), (1, "red", "yellow")]
    assert plant.store[1].peak_level == "red"


def test_an_hour_without_data_does_not_close_a_threshold_alarm():
    plant = Plant("temperature")
    plant.set(2, 2, "red")
    plant.set(5, 5, "red")  # hours 3-4 sent nothing: the data was never back to normal
    plant.hourly_runs(2, 6)
    assert plant.spans() == [(2, 5, "open", None)]
    assert plant.announced == [(1, "red", None)]


def test_late_data_repairing_middle_hours_splits_nothing_and_a_repaired_tail_closes_it():
    plant = Plant()
    plant.set(0, 1, None)
    plant.set(2, 20, "red")
    plant.hourly_runs(0, 20)
    plant.set(8, 10, None)  # the gateway's buffer arrives for 8..10
    plant.evaluate(8, 11, now=21)  # a backfill of those hours
    plant.set(21, 21, "red")
    plant.hourly_runs(21, 21)
    assert plant.spans() == [(2, 21, "open", None)]
    assert len(plant.store) == 1 and plant.announced == [(1, "red", None)]
    plant.set(16, 21, None)  # and for 16..21: the alarm ends at its last bad hour, 15
    plant.evaluate(16, 22, now=23)
    assert plant.spans() == [(2, 15, "closed", "back to normal")]
    assert plant.store[1].closed_hour == T0 + 16 * HOUR


def test_an_episode_whose_every_hour_is_repaired_closes_as_repaired():
    plant = Plant()
    plant.set(0, 1, None)
    plant.set(2, 3, "orange")
    plant.evaluate(0, 4, now=5)
    plant.set(2, 3, None)
    plant.evaluate(0, 4, now=6)
    assert plant.spans() == [(2, 3, "closed", "repaired by late data")]


def test_an_acknowledged_alarm_stays_quiet_until_it_rises_and_then_needs_a_person_again():
    plant = Plant("temperature")
    plant.set(0, 3, "yellow")
    plant.hourly_runs(0, 3)
    plant.store[1].state = "acknowledged"
    plant.set(4, 4, "yellow")
    plant.hourly_runs(4, 4)
    assert plant.store[1].state == "acknowledged" and len(plant.announced) == 1
    plant.set(5, 5, "red")
    plant.hourly_runs(5, 5)
    assert plant.store[1].state == "open" and plant.announced[-1] == (1, "red", "yellow")


def test_muted_hours_raise_nothing_and_a_running_mute_closes_the_open_alarm():
    plant = Plant()
    plant.set(0, 2, "red")
    plant.hourly_runs(0, 2)
    plant.mutes = pl.DataFrame({"loc_id": ["L1"], "starts_dt": [T0 + 3 * HOUR], "until_dt": [T0 + 10 * HOUR], "reason": ["recalibration"]})
    plant.set(3, 9, "red")
    plant.hourly_runs(3, 9)
    assert plant.spans() == [(0, 2, "closed", "muted until 2024-03-01 10:00: recalibration")]
    assert len(plant.announced) == 1
    plant.set(10, 10, "red")  # still silent after the maintenance: a new alarm
    plant.hourly_runs(10, 10)
    assert plant.spans()[-1] == (10, 10, "open", None) and plant.announced[-1] == (2, "red", None)


def test_a_deactivated_location_closes_its_alarm_and_opens_no_new_one():
    plant = Plant()
    plant.set(0, 2, "red")
    plant.hourly_runs(0, 2)
    plant.inactive = {"L1"}
    plant.set(3, 3, "red")
    plant.hourly_runs(3, 3)
    assert plant.spans() == [(0, 2, "closed", "location deactivated")]
    assert len(plant.announced) == 1


def test_old_hours_are_recorded_quietly_and_announced_when_they_reach_the_notify_window():
    plant = Plant()
    plant.set(0, 5, "red")
    plant.evaluate(0, 4, notify_since=10)  # a backfill of old hours
    assert plant.spans() == [(0, 3, "open", None)] and plant.announced == []
    plant.evaluate(4, 6, notify_since=5)
    assert plant.announced == [(1, "red", None)]
