"""Quality checks. Each check returns the violating rows (empty = pass), with a `problem` column.

`describe` turns the violating rows of a check into an error message that shows
the offending values, so a failed run says exactly what is wrong and where.
"""

from __future__ import annotations

import polars as pl

from flows.domain.aggregate import KEYS, STORED_COLUMNS
from flows.domain.measures import MEASURES

# A rounded average may sit a rounding step outside [min, max] when all readings are equal.
AVG_TOLERANCE = 1e-4


def bad_raw_values(raw: pl.DataFrame, limits: dict[str, tuple[float, float]] | None = None) -> pl.DataFrame:
    """Raw rows that cannot be aggregated: missing keys or non-finite measures (NaN, +-inf), and
    with `limits`, values outside the physical limits (they have no place in an average)."""
    problems = [
        pl.when(pl.col("loc_id").is_null()).then(pl.lit("loc_id is null")),
        pl.when(pl.col("capture_dt").is_null()).then(pl.lit("capture_dt is null")),
        *(
            pl.when(pl.col(m).is_not_null() & ~pl.col(m).is_finite()).then(
                pl.lit(f"{m} is not a finite number")
            )
            for m in MEASURES
        ),
        *(
            pl.when(pl.col(m).is_finite() & ((pl.col(m) < lo) | (pl.col(m) > hi))).then(
                pl.lit(f"{m} outside the physical limits [{lo:g}, {hi:g}]")
            )
            for m, (lo, hi) in (limits or {}).items()
        ),
    ]
    return _rows_with_problems(raw, problems)


def bad_hourly_values(hourly: pl.DataFrame) -> pl.DataFrame:
    """Aggregated rows that break an invariant: null keys, min <= avg <= max, counts."""
    problems: list[pl.Expr] = [
        pl.when(pl.any_horizontal(pl.col(k).is_null() for k in KEYS)).then(pl.lit("null key")),
        pl.when(pl.col("sample_count") < 1).then(pl.lit("sample_count < 1")),
    ]
    for m in MEASURES:
        lo, avg, hi, n = (pl.col(f"{m}_{s}") for s in ("min", "avg", "max", "count"))
        problems += [
            pl.when((avg < lo - AVG_TOLERANCE) | (avg > hi + AVG_TOLERANCE)).then(
                pl.lit(f"{m}: avg outside [min, max]")
            ),
            pl.when(n > pl.col("sample_count")).then(pl.lit(f"{m}: count > sample_count")),
            pl.when((n.fill_null(0) == 0) != avg.is_null()).then(
                pl.lit(f"{m}: avg is null exactly when count is 0 (violated)")
            ),
        ]
    return _rows_with_problems(hourly, problems)


def missing_keys(expected: pl.DataFrame, actual: pl.DataFrame) -> pl.DataFrame:
    """Rows of `expected` whose (loc_id, hour) is absent from `actual`."""
    return expected.select(KEYS).join(actual.select(KEYS), on=KEYS, how="anti").with_columns(
        problem=pl.lit("computed but not in target")
    )


def differing_rows(stored: pl.DataFrame, computed: pl.DataFrame) -> pl.DataFrame:
    """Rows of `stored` whose values differ from `computed`'s row of the same key (NULLs equal)."""
    return stored.join(computed, on=list(STORED_COLUMNS), how="anti", nulls_equal=True).with_columns(
        problem=pl.lit("target differs from computed")
    )


def _rows_with_problems(df: pl.DataFrame, problems: list[pl.Expr]) -> pl.DataFrame:
    flagged = df.with_columns(
        pl.concat_str(problems, separator="; ", ignore_nulls=True).alias("problem")
    )
    return flagged.filter(pl.col("problem").is_not_null() & (pl.col("problem") != ""))


def describe(bad: pl.DataFrame, what: str, limit: int = 10) -> str:
    """A readable message listing up to `limit` violating rows."""
    lines = [f"{bad.height} {what}:"]
    for row in bad.head(limit).iter_rows(named=True):
        fields = ", ".join(f"{k}={v!r}" for k, v in row.items() if k != "problem")
        lines.append(f"  - {row['problem']}: {fields}")
    if bad.height > limit:
        lines.append(f"  ... and {bad.height - limit} more")
    return "\n".join(lines)
