"""Hourly aggregation, the pure part: raw readings -> per location-hour max/avg/min/count, the rule
that leaves absurd values' hours out, the hour key, and the plan that makes the stored rows equal
the computed ones. Polars in, Polars and plans out; no I/O.

An hour is a naive plant-local datetime (column `hour`) everywhere in the pipeline; only the store
writes it as the target's key (ymd 'YYYYMMDD', hh '00'..'23'), through `encode_key`/`decode_key`
below, the one place an hour becomes a key and back.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import polars as pl

from flows.domain.measures import MEASURES

RAW_SCHEMA = pl.Schema(
    {
        "loc_id": pl.String,
        "capture_dt": pl.Datetime("us"),
        **{m: pl.Float64 for m in MEASURES},
    }
)

KEYS = ("loc_id", "hour")
# Averages are rounded to 4 decimals (the contract allows 2 at the coarsest): re-aggregating the
# same readings then gives bit-identical values, so a rerun leaves the target unchanged.
AVG_DECIMALS = 4

VALUE_COLUMNS = (
    *(f"{m}_{stat}" for m in MEASURES for stat in ("max", "avg", "min")),
    *(f"{m}_count" for m in MEASURES),
    "sample_count",
)
HOURLY_COLUMNS = (*KEYS, *VALUE_COLUMNS)
# What the target stores per location-hour: the aggregates, and the coverage (flows/domain/health.py)
STORED_COLUMNS = (*HOURLY_COLUMNS, "coverage")
HOURLY_SCHEMA = pl.Schema(
    {"loc_id": pl.String, "hour": pl.Datetime("us"),
     **{c: pl.Int64 if c.endswith("count") else pl.Float64 for c in (*VALUE_COLUMNS, "coverage")}}
)


# ---- the hour key: the target's (ymd, hh) of an hour, and back

KEY_COLUMNS = ("loc_id", "ymd", "hh")


def key_of(hour: datetime) -> tuple[str, str]:
    """(ymd, hh) of `hour`: ('20240101', '07')."""
    return f"{hour:%Y%m%d}", f"{hour:%H}"


def encode_key(frame: pl.DataFrame) -> pl.DataFrame:
    """`frame` with its `hour` written as ymd and hh (in its place)."""
    hour = pl.col("hour")
    return frame.with_columns(hour.dt.strftime("%Y%m%d").alias("ymd"), hour.dt.strftime("%H").alias("hh")).select(
        *(c if c != "hour" else pl.col(["ymd", "hh"]) for c in frame.columns)
    )


def decode_key(frame: pl.DataFrame) -> pl.DataFrame:
    """`frame` with ymd and hh read back into `hour` (in their place)."""
    hour = pl.concat_str("ymd", "hh", pl.lit("00")).str.to_datetime("%Y%m%d%H%M", time_unit="us").alias("hour")
    cols = [c for c in frame.columns if c != "hh"]
    return frame.with_columns(hour).select(*(c if c != "ymd" else "hour" for c in cols))


# ---- aggregation


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
    return raw.lazy().group_by("loc_id", hour.alias("hour")).agg(aggs).select(HOURLY_COLUMNS).sort(KEYS).collect()


def without_hours_of(raw: pl.DataFrame, bad: pl.DataFrame) -> pl.DataFrame:
    """`raw` without the location-hours of the `bad` readings (checks.bad_raw_values): a value that
    cannot be averaged keeps its whole location-hour out, whatever else that hour holds."""
    if not bad.height:
        return raw
    hour = pl.col("capture_dt").dt.truncate("1h")
    return raw.join(left_out_hours(bad), left_on=["loc_id", hour], right_on=list(KEYS), how="anti")


def left_out_hours(bad: pl.DataFrame) -> pl.DataFrame:
    """(loc_id, hour) of the location-hours that `bad` readings keep out."""
    return bad.select("loc_id", pl.col("capture_dt").dt.truncate("1h").alias("hour")).unique().sort(KEYS)


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
    out = partial.with_columns(
        *(
            pl.when(pl.col(f"{m}_count") > 0)
            .then((pl.col(f"{m}_sum") / pl.col(f"{m}_count")).round(AVG_DECIMALS))
            .alias(f"{m}_avg")
            for m in MEASURES
        ),
        *(pl.col(f"{m}_count").cast(pl.Int64) for m in MEASURES),
        pl.col("sample_count").cast(pl.Int64),
        pl.col("hour").cast(pl.Datetime("us")),
    )
    return out.select(HOURLY_COLUMNS).sort(KEYS)


def partial_is_plausible(partial: pl.DataFrame, limits: dict[str, tuple[float, float]]) -> bool:
    """False when a sum, max or min is NaN or infinite, or a max or min lies outside the physical
    `limits`: some raw value cannot be averaged (the raw rows then name it)."""
    stats = [f"{m}_{s}" for m in MEASURES for s in ("max", "min", "sum")]
    outside = [(pl.col(f"{m}_max") > hi) | (pl.col(f"{m}_min") < lo) for m, (lo, hi) in limits.items()]
    return not partial.select(pl.any_horizontal(*(~pl.col(c).is_finite() for c in stats), *outside).any()).item()


# ---- the plan: what makes the stored rows of a window equal the computed ones


@dataclass
class HourlyPlan:
    """What to write into the target for one window: `upserts` (new and changed rows, the
    values to store), `deletes` (keys of rows whose readings were all deleted at the source), and
    how many rows were new, changed and already equal."""

    upserts: pl.DataFrame
    deletes: pl.DataFrame
    inserted: int
    updated: int
    unchanged: int

    @property
    def removed(self) -> int:
        return self.deletes.height


def plan_hourly(
    computed: pl.DataFrame, stored: pl.DataFrame, prune_from: datetime | None, spare: pl.DataFrame
) -> HourlyPlan:
    """Compare the `computed` rows of a window with the `stored` ones (same columns, STORED_COLUMNS).

    A row whose values already match is left alone, so a rerun over the same readings changes
    nothing. A stored row that was not computed again (its readings were all deleted at the
    source) is deleted when its hour is at or after `prune_from`, unless its key is in `spare`
    (loc_id, hour: location-hours left out, not recomputed); before `prune_from` (hours whose raw
    readings the source no longer keeps) and with `prune_from` None nothing is deleted."""
    changed = computed.join(stored, on=list(STORED_COLUMNS), how="anti", nulls_equal=True)
    inserted = changed.join(stored.select(KEYS), on=list(KEYS), how="anti").height
    stale = stored.select(KEYS).join(computed.select(KEYS), on=list(KEYS), how="anti")
    stale = stale.join(spare.select(KEYS), on=list(KEYS), how="anti")
    stale = stale.filter(pl.col("hour") >= prune_from) if prune_from is not None else stale.clear()
    return HourlyPlan(changed, stale, inserted, changed.height - inserted, computed.height - changed.height)
