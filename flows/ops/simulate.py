"""Realistic synthetic readings for the demo, tests and benchmarks (pure Polars, no I/O)."""

from __future__ import annotations

import math
from datetime import datetime

import numpy as np
import polars as pl

from flows.domain.aggregate import RAW_SCHEMA


def readings(
    locations: int,
    start: datetime,
    end: datetime,
    every_seconds: int = 10,
    null_share: float = 0.01,
    seed: int = 7,
    hot_locations: int = 0,
    prefix: str = "LOC",
) -> pl.DataFrame:
    """One reading per location every `every_seconds` in [start, end).

    Temperature follows a daily curve (coolest ~03:00, warmest ~15:00) around a per-location base,
    humidity moves against it, PCV temperature runs a few degrees above the air; each measure has
    noise and about `null_share` NULLs. The first `hot_locations` locations run 12 C hotter.
    The draws are bounded, so whatever the seed a normal location stays within 15-29 C and
    39-71 % (inside the demo's yellow limits: only a hot location raises threshold alerts), and a
    hot one reaches 35 C or more every afternoon.
    """
    rng = np.random.default_rng(seed)
    steps = int((end - start).total_seconds() // every_seconds)
    offsets = np.arange(steps, dtype=np.int64) * every_seconds
    n = steps * locations
    loc_index = np.repeat(np.arange(locations), steps)
    seconds = np.tile(offsets, locations)
    hour_of_day = ((start.hour * 3600 + start.minute * 60 + start.second + seconds) % 86400) / 3600
    daily = np.sin((hour_of_day - 9.0) / 24.0 * 2 * math.pi)
    base = 22.0 + rng.normal(0, 1.5, locations).clip(-2, 2)[loc_index] + np.where(loc_index < hot_locations, 12.0, 0.0)
    temperature = base + 4.0 * daily + rng.normal(0, 0.3, n).clip(-1, 1)
    humidity = 55.0 - 10.0 * daily + rng.normal(0, 2.0, n).clip(-6, 6)
    pcv = temperature + 3.0 + rng.normal(0, 0.5, n)

    def with_nulls(values: np.ndarray) -> pl.Series:
        return pl.Series(np.round(values, 2)).scatter(np.flatnonzero(rng.random(n) < null_share), None)

    return pl.DataFrame(
        {
            "loc_id": pl.Series([location_id(i, prefix) for i in range(locations)]).gather(loc_index),
            "capture_dt": pl.Series(seconds * 1_000_000).cast(pl.Duration("us")) + start,
            "temperature": with_nulls(temperature),
            "humidity": with_nulls(humidity),
            "pcv_temperature": with_nulls(pcv),
        },
        schema=RAW_SCHEMA,
    )


def location_id(index: int, prefix: str = "LOC") -> str:
    """The id `readings` gives its index-th location (0-based): LOC001, LOC002, ..."""
    return f"{prefix}{index + 1:03d}"

