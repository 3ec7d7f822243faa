"""Hourly aggregation of raw readings: Polars in, Polars out, no I/O."""

from __future__ import annotations

import polars as pl

from flows.core.schema import MEASURES

RAW_SCHEMA = pl.Schema(
    {
        "loc_id": pl.String,
        "capture_dt": pl.Datetime("us"),
        **{m: pl.Float64 for m in MEASURES},
    }
)

KEYS = ("loc_id", "ymd", "hh")
# Averages are rounded to 4 decimals (the contract allows 2 at the coarsest): re-aggregating the
# same readings then gives bit-identical values, so a rerun leaves the target unchanged.
AVG_DECIMALS = 4

HOURLY_COLUMNS = (
    *KEYS,
    *(f"{m}_{stat}" for m in MEASURES for stat in ("max", "avg", "min")),
    *(f"{m}_count" for m in MEASURES),
    "sample_count",
)
# What the target stores per location-hour: the aggregates, and the coverage (flows/core/health.py)
STORED_COLUMNS = (*HOURLY_COLUMNS, "coverage")


def hourly(raw: pl.DataFrame | pl.LazyFrame) -> pl.DataFrame:
    """Per (loc_id, hour of capture_dt): max, avg, min and count of each measure, and row count.

    Statistics are over the non-null readings only, as SQL's MAX/AVG/MIN/COUNT(col) compute them;
    an hour whose readings of a measure are all null gets nulls and a count of 0.
    """
    hour = pl.col("capture_dt").dt.truncate("1h")
    aggs: list[pl.Expr] = []
    for m in MEASURES:
        col = pl.col(m)
        aggs += [
            col.max().alias(f"{m}_max"),
            col.mean().round(AVG_DECIMALS).alias(f"{m}_avg"),
            col.min().alias(f"{m}_min"),
            col.count().cast(pl.Int64).alias(f"{m}_count"),
        ]
    aggs.append(pl.len().cast(pl.Int64).alias("sample_count"))
    return (
        raw.lazy()
        .group_by("loc_id", hour.alias("hour"))
        .agg(aggs)
        .with_columns(
            pl.col("hour").dt.strftime("%Y%m%d").alias("ymd"),
            pl.col("hour").dt.strftime("%H").alias("hh"),
        )
        .select(HOURLY_COLUMNS)
        .sort(KEYS)
        .collect()
    )


# ---- partial aggregates: computed by the source database (pushdown), finished here

PARTIAL_COLUMNS = (
    "loc_id",
    "hour",
    "sample_count",
    *(f"{m}_{stat}" for m in MEASURES for stat in ("max", "min", "sum", "count")),
)


def finish_partial(partial: pl.DataFrame) -> pl.DataFrame:
    """Hourly rows from per (loc_id, hour) max, min, sum and count computed by the source.

    The same values as `hourly` over the raw rows: avg = sum / count over non-null readings,
    rounded alike; an all-null measure gets nulls and a count of 0.
    """
    hour = pl.col("hour").cast(pl.Datetime("us"))
    out = partial.with_columns(
        *(
            pl.when(pl.col(f"{m}_count") > 0)
            .then((pl.col(f"{m}_sum") / pl.col(f"{m}_count")).round(AVG_DECIMALS))
            .alias(f"{m}_avg")
            for m in MEASURES
        ),
        *(pl.col(f"{m}_count").cast(pl.Int64) for m in MEASURES),
        pl.col("sample_count").cast(pl.Int64),
        hour.dt.strftime("%Y%m%d").alias("ymd"),
        hour.dt.strftime("%H").alias("hh"),
    )
    return out.select(HOURLY_COLUMNS).sort(KEYS)


def partial_is_plausible(partial: pl.DataFrame, limits: dict[str, tuple[float, float]]) -> bool:
    """False when a sum, max or min is NaN or infinite, or a max or min lies outside the physical
    `limits`: some raw value cannot be averaged (the raw rows then name it)."""
    stats = [f"{m}_{s}" for m in MEASURES for s in ("max", "min", "sum")]
    outside = [(pl.col(f"{m}_max") > hi) | (pl.col(f"{m}_min") < lo) for m, (lo, hi) in limits.items()]
    return not partial.select(pl.any_horizontal(*(~pl.col(c).is_finite() for c in stats), *outside).any()).item()
