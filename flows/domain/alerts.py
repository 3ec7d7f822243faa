"""Threshold alerts, the pure part: which hourly values breach which active limits.

A threshold (measure, level, min_value, max_value) gives the limits of that level; an hour
breaches it when its max is above max_value (measured value: the max) or its min is below
min_value (measured value: the min). 'green' is the normal band and never alerts. A threshold
with a loc_id overrides the plant default (loc_id NULL) of the same measure and level there.
"""

from __future__ import annotations

import polars as pl

from flows.domain.measures import MEASURES

ALERT_KEYS = ("loc_id", "alert_time", "measure", "level")


def effective_thresholds(thresholds: pl.DataFrame, loc_ids: pl.Series) -> pl.DataFrame:
    """Per (loc_id, measure, level): the override where one exists, else the plant default."""
    active = thresholds.filter(pl.col("is_active") & (pl.col("level") != "green")).rename(
        {"threshold_type": "measure"}
    )
    cols = ["loc_id", "measure", "level", "min_value", "max_value"]
    overrides = active.filter(pl.col("loc_id").is_in(loc_ids.implode())).select(cols)
    defaults = (
        pl.DataFrame({"loc_id": loc_ids.unique()})
        .join(active.filter(pl.col("loc_id").is_null()).drop("loc_id"), how="cross")
        .select(cols)
        .join(overrides, on=["loc_id", "measure", "level"], how="anti")
    )
    return pl.concat([overrides, defaults])


def breaches(hourly: pl.DataFrame, thresholds: pl.DataFrame) -> pl.DataFrame:
    """One row per (loc_id, hour, measure, level) whose hourly values cross the limits."""
    long = pl.concat(
        [
            hourly.select(
                "loc_id",
                pl.col("hour").alias("alert_time"),
                pl.lit(m).alias("measure"),
                pl.col(f"{m}_max").alias("hi"),
                pl.col(f"{m}_min").alias("lo"),
            )
            for m in MEASURES
        ]
    )
    limits = effective_thresholds(thresholds, hourly["loc_id"])
    joined = long.join(limits, on=["loc_id", "measure"], how="inner")
    above = pl.col("max_value").is_not_null() & (pl.col("hi") > pl.col("max_value"))
    below = pl.col("min_value").is_not_null() & (pl.col("lo") < pl.col("min_value"))
    return (
        joined.filter(above | below)
        .with_columns(
            measured_value=pl.when(above).then(pl.col("hi")).otherwise(pl.col("lo")),
            direction=pl.when(above).then(pl.lit("above")).otherwise(pl.lit("below")),
        )
        .with_columns(
            message=pl.format(
                "{} {} at {} {}: {} {} the {} limit [{}, {}]",
                "loc_id", "measure", pl.col("alert_time").dt.strftime("%Y-%m-%d %H:00"), "level",
                "measured_value", "direction", "level", "min_value", "max_value",
            )
        )
        .select(
            *ALERT_KEYS, "measured_value",
            pl.col("min_value").alias("threshold_min"), pl.col("max_value").alias("threshold_max"), "message",
        )
        .sort(ALERT_KEYS)
    )
