"""A raw data set with the cases the seed got wrong or never met (plant local times)."""

from __future__ import annotations

from datetime import datetime

import polars as pl

from flows.domain.aggregate import RAW_SCHEMA
from flows.ops.simulate import readings

RANGE_START = datetime(2024, 1, 31)  # backfill start=2024-01-31 end=2024-02-01 covers
RANGE_END = datetime(2024, 2, 2)  # [RANGE_START, RANGE_END): a day and a month boundary


def rows() -> pl.DataFrame:
    """Readings from 2024-01-30 22:00 to 2024-02-02 02:00 (so some lie outside the range)."""
    bulk = readings(4, datetime(2024, 1, 30, 22), datetime(2024, 2, 2, 2), every_seconds=300, null_share=0.05)
    hour = pl.col("capture_dt").dt.truncate("1h")
    bulk = bulk.with_columns(
        # LOC002: every humidity reading of 2024-01-31 05:00 is NULL -> avg/max/min NULL, count 0
        humidity=pl.when((pl.col("loc_id") == "LOC002") & (hour == datetime(2024, 1, 31, 5)))
        .then(None)
        .otherwise(pl.col("humidity")),
        # LOC003: no temperature at all in 2024-02-01 10:00
        temperature=pl.when((pl.col("loc_id") == "LOC003") & (hour == datetime(2024, 2, 1, 10)))
        .then(None)
        .otherwise(pl.col("temperature")),
    )
    special = pl.DataFrame(
        [
            # an hour with exactly one reading
            ("ONE", datetime(2024, 1, 31, 12, 34, 56), 21.5, 40.25, 24.0),
            # exactly on hour boundaries, across the day and month boundary
            ("EDGE", datetime(2024, 1, 31, 23, 0, 0), 20.0, 50.0, None),
            ("EDGE", datetime(2024, 1, 31, 23, 59, 59, 999999), 30.0, None, 33.0),
            ("EDGE", datetime(2024, 2, 1, 0, 0, 0), 25.0, 55.5, 28.0),
            ("EDGE", datetime(2024, 2, 1, 0, 0, 0, 1), -5.125, 0.0, 1.0),
            # a reading with every measure NULL still counts as a sample
            ("EDGE", datetime(2024, 2, 1, 1, 0, 0), None, None, None),
        ],
        schema=RAW_SCHEMA,
        orient="row",
    )
    return pl.concat([bulk, special])
