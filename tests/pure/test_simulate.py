"""The simulated floor keeps the demo's promise whatever the day: only the hot location breaches
the demo's yellow limits. The seed changes with the date (the demo seeds each day with its
ordinal), so an unbounded draw once made a normal location cross 30 C on one day of the year."""

from __future__ import annotations

from datetime import datetime, timedelta

import polars as pl

from flows.ops.seed import THRESHOLDS
from flows.ops.simulate import location_id, readings


def test_only_the_hot_location_breaches_the_demo_limits_on_any_day():
    yellow = {m: (lo, hi) for m, level, lo, hi in THRESHOLDS if level == "yellow"}
    first = datetime(2026, 10, 1, 3)
    for day in (first + timedelta(days=d) for d in range(90)):  # 2026-12-06 03:00 broke the demo
        raw = readings(8, day, day + timedelta(hours=23), hot_locations=1, prefix="DEMO-L", seed=day.toordinal())
        span = raw.group_by("loc_id").agg(
            *(pl.col(m).min().alias(f"{m}_min") for m in yellow), *(pl.col(m).max().alias(f"{m}_max") for m in yellow)
        )
        breached = span.filter(pl.any_horizontal(
            *((pl.col(f"{m}_min") < lo) | (pl.col(f"{m}_max") > hi) for m, (lo, hi) in yellow.items())
        ))
        assert breached["loc_id"].to_list() == [location_id(0, "DEMO-L")], (day, breached.rows())
