"""Raw readings: parse and check text values, flag outliers, describe rejects. Pure Polars.

Every row ends up either in `good` (typed, ready for temperature_raw) or in `rejects` (the
original values as JSON, with every reason it failed): nothing is dropped silently.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, tzinfo

import polars as pl

from flows.domain.aggregate import RAW_SCHEMA
from flows.domain.measures import MEASURES
from flows.domain.windows import is_repeated

DEFAULT_VALUE_COLUMNS: dict[str, str] = {"temperature": "t1", "humidity": "t2", "pcv_temperature": "t3"}
DEFAULT_LIMITS: dict[str, tuple[float, float]] = {
    "temperature": (-40.0, 125.0),
    "humidity": (0.0, 100.0),
    "pcv_temperature": (-40.0, 200.0),
}
DEVICE_ROW_IDENTITY = ["sensor_id", "device_id", "capture_dt", "upload_dt"]  # what makes a reject's row_key
REJECT_COLUMNS = ("source", "row_key", "sensor_id", "loc_id", "capture_dt", "raw_values", "reason", "rejected_dt")


@dataclass
class Parsed:
    good: pl.DataFrame  # RAW_SCHEMA columns
    rejects: pl.DataFrame  # REJECT_COLUMNS
    # good rows in a repeated (daylight-saving) hour, with their original columns: the loader sets
    # aside those whose (loc_id, capture_dt) already holds another reading
    repeated: pl.DataFrame | None = None
    # good rows replaced by a later upload of the same reading in these rows (that one is in good):
    # rows = good + rejects + replaced
    replaced: int = 0


def repeated_hours(times: pl.Series, tz: tzinfo) -> list[datetime]:
    """The naive plant-local hours among `times` that occur twice (the autumn change of a zone with
    daylight saving: 02:00-03:00 in Europe/Berlin on 2024-10-27). Empty for Asia/Seoul."""
    return sorted(h for h in times.drop_nulls().dt.truncate("1h").unique().to_list() if is_repeated(h, tz))


def repeated_reason(capture_dt: pl.Expr) -> pl.Expr:
    return pl.format(
        "repeated hour of the daylight-saving change: {} (plant time) already holds another reading of this "
        "location; this one is kept here", capture_dt.dt.strftime("%Y-%m-%d %H:%M:%S"),
    )


def check_value_columns(value_columns: Mapping[str, str]) -> dict[str, str]:
    """`value_columns` if it maps known measures to t1..t6, else a ValueError naming the entry."""
    allowed = {f"t{i}" for i in range(1, 7)}
    for measure, column in value_columns.items():
        if measure not in MEASURES:
            raise ValueError(f"value_columns: {measure!r} is not a measure (expected {', '.join(MEASURES)})")
        if column not in allowed:
            raise ValueError(f"value_columns: {measure} -> {column!r} is not one of t1..t6")
    return dict(value_columns)


def check_limits(limits: Mapping[str, object], plant: Mapping[str, tuple[float, float]]) -> dict[str, tuple[float, float]]:
    """Physical limits per measure as (low, high) over the `plant`'s, else a ValueError naming the entry."""
    return merge_limits(plant, limits, "limits")


def merge_limits(base: Mapping[str, tuple[float, float]], limits: Mapping[str, object], where: str) -> dict[str, tuple[float, float]]:
    out = dict(base)
    for measure, pair in limits.items():
        if measure not in MEASURES:
            raise ValueError(f"{where}: {measure!r} is not a measure (expected {', '.join(MEASURES)})")
        try:
            low, high = (float(v) for v in pair)  # type: ignore[union-attr]
        except (TypeError, ValueError):
            raise ValueError(f"{where}: {measure}={pair!r} must be [low, high]") from None
        if not low <= high:
            raise ValueError(f"{where}: {measure}=[{low}, {high}] has low > high")
        out[measure] = (low, high)
    return out


QUOTE_CHARS = 40  # a bad value is quoted up to this many characters, so every reason of a row fits


def quoted(text: pl.Expr) -> pl.Expr:
    """`'value'`, or its first QUOTE_CHARS characters and its length when longer."""
    length = text.str.len_chars()
    return (
        pl.when(length > QUOTE_CHARS)
        .then(pl.format("'{}...' ({} characters)", text.str.slice(0, QUOTE_CHARS), length))
        .otherwise(pl.format("'{}'", text))
    )


def _value_and_checks(measure: str, column: str, low: float, high: float) -> tuple[pl.Expr, pl.Expr, pl.Expr]:
    """(parsed value, "the parsed value is bad", the reason why) of one text column.

    The reason is only ever evaluated on the few bad rows: formatting a message per row costs
    more than parsing the whole batch."""
    text = pl.col(column).cast(pl.String).str.strip_chars()
    value = text.cast(pl.Float64, strict=False)
    parsed = pl.col(measure)  # `bad` reads the parsed column, computed first, instead of parsing again
    bad = pl.col(column).is_not_null() & (parsed.is_null() | ~parsed.is_finite() | (parsed < low) | (parsed > high))
    problem = (
        pl.when(text.is_null())
        .then(None)
        .when(text == "")
        .then(pl.lit(f"{column} ({measure}) is empty"))
        .when(value.is_null())
        .then(pl.format(f"{column} ({measure})=" + "{} is not a number", quoted(text)))
        .when(value.is_nan())
        .then(pl.lit(f"{column} ({measure}) is NaN"))
        .when(value.is_infinite())
        .then(pl.lit(f"{column} ({measure}) is infinite"))
        .when((value < low) | (value > high))
        .then(pl.format(f"{measure}=" + "{}" + f" outside the physical limits [{low:g}, {high:g}]", value))
    )
    return value.alias(measure), bad, problem


def parse_device_rows(
    rows: pl.DataFrame,
    sensors: pl.DataFrame,
    value_columns: Mapping[str, str],
    limits: Mapping[str, tuple[float, float]],
    source: str,
    now: datetime,
    require_upload: bool = False,
    tz: tzinfo | None = None,
) -> Parsed:
    """Validate device-table rows (sensor_id, device_id, capture_dt, t1..t6, upload_dt).

    sensor_id maps to loc_id through `sensors` (sensor_id, loc_id). Of several uploads of one
    (loc_id, capture_dt), the latest upload wins: the others are counted as `replaced`.
    `require_upload`: a row without an upload time is rejected as such (the incremental load reads
    by upload time).

    With the plant's `tz`: in an hour that occurs twice (daylight saving ends), two readings of one
    location at the same naive time are two readings, not a correction: the earliest upload is
    kept, the others rejected with the reason; the rows kept there are returned as `repeated`
    for the loader to check against what is already stored.
    """
    values, bad, problems = [], [], []
    for measure in MEASURES:
        column = value_columns.get(measure)
        if column is None:
            values.append(pl.lit(None, pl.Float64).alias(measure))
            continue
        value, is_bad, problem = _value_and_checks(measure, column, *limits[measure])
        values.append(value)
        bad.append(is_bad)
        problems.append(problem)
    unknown_sensor = pl.col("sensor_id").is_not_null() & pl.col("loc_id").is_null()
    no_upload = pl.col("upload_dt").is_null() if require_upload else pl.lit(False)
    bad += [pl.col("capture_dt").is_null(), pl.col("sensor_id").is_null(), unknown_sensor, no_upload]
    problems += [
        pl.when(pl.col("capture_dt").is_null()).then(pl.lit("capture_dt is missing")),
        pl.when(pl.col("sensor_id").is_null()).then(pl.lit("sensor_id is missing")),
        pl.when(no_upload).then(pl.lit("upload_dt is missing (no upload time)")),
        pl.when(unknown_sensor).then(pl.format("unknown sensor {}", quoted(pl.col("sensor_id").cast(pl.String)))),
    ]
    mapped = rows.join(sensors.select("sensor_id", "loc_id"), on="sensor_id", how="left")
    checked = mapped.with_columns(*values).with_columns(pl.any_horizontal(bad).alias("_bad"))
    bad_rows = checked.filter("_bad").with_columns(pl.concat_str(problems, separator="; ", ignore_nulls=True).alias("reason"))
    good = checked.filter(~pl.col("_bad"))
    original = [c for c in rows.columns]
    repeated = None
    hours = repeated_hours(good["capture_dt"], tz) if tz is not None and good.height else []
    if hours:
        in_repeated = pl.col("capture_dt").dt.truncate("1h").is_in(hours)
        twice = good.filter(in_repeated).sort("upload_dt", nulls_last=True).with_columns(
            _first=pl.int_range(pl.len()).over("loc_id", "capture_dt") == 0
        )
        kept_aside = twice.filter(~pl.col("_first")).with_columns(reason=repeated_reason(pl.col("capture_dt")))
        bad_rows = pl.concat([bad_rows, kept_aside.drop("_first")], how="diagonal_relaxed")
        repeated = twice.filter("_first").drop("_first")
        good = pl.concat([good.filter(~in_repeated), repeated], how="diagonal_relaxed")
    # distinct hashes prove distinct keys (6x cheaper than comparing keys); equal ones are checked exactly
    uploads = good.height
    if uploads != good.select(pl.struct("loc_id", "capture_dt").hash().n_unique()).item():
        good = good.sort("upload_dt", nulls_last=False).unique(["loc_id", "capture_dt"], keep="last", maintain_order=True)
    good = good.select(RAW_SCHEMA.names()).cast(RAW_SCHEMA)  # type: ignore[arg-type]
    set_aside = rejects(bad_rows, original, source, now, identity=DEVICE_ROW_IDENTITY)
    return Parsed(good, set_aside, repeated, replaced=uploads - good.height)


def repeated_conflicts(repeated: pl.DataFrame, stored: pl.DataFrame, origin: str, now: datetime) -> tuple[pl.DataFrame, pl.DataFrame]:
    """In a repeated (daylight-saving) hour, a reading whose (loc_id, capture_dt) already holds a
    different `stored` reading is another reading of the same naive time, not a correction: it is
    set aside with the reason instead of overwriting the first (the same reading again is no
    conflict). `repeated` holds the batch's good rows of repeated hours with their original
    columns (Parsed.repeated). Returns (loc_id, capture_dt of the conflicts, their reject rows)."""
    keys = ["loc_id", "capture_dt"]
    measures = list(MEASURES)
    joined = repeated.join(stored.select(*keys, *(pl.col(m).alias(f"{m}_stored") for m in measures)), on=keys, how="inner")
    differs = pl.any_horizontal(*(pl.col(m).ne_missing(pl.col(f"{m}_stored")) for m in measures))
    conflicts = joined.filter(differs).with_columns(reason=repeated_reason(pl.col("capture_dt")))
    original = [c for c in repeated.columns if c not in (*measures, "loc_id", "_bad")]
    return conflicts.select(keys), rejects(conflicts, original, origin, now, DEVICE_ROW_IDENTITY)


def rejects(
    bad: pl.DataFrame, original: list[str], source: str, now: datetime, identity: list[str]
) -> pl.DataFrame:
    """Reject rows for `bad` (which has a `reason`): original values as JSON, a stable row key."""
    records = []
    for row in bad.iter_rows(named=True):
        raw = {c: (row[c].isoformat(sep=" ") if isinstance(row[c], datetime) else row[c]) for c in original}
        key = json.dumps([raw.get(c) for c in identity], default=str, ensure_ascii=False)
        sensor = row.get("sensor_id")
        records.append(
            {
                "source": source[:128],
                "row_key": hashlib.sha256(key.encode()).hexdigest(),
                "sensor_id": None if sensor is None else str(sensor)[:255],
                "loc_id": row.get("loc_id"),
                "capture_dt": row.get("capture_dt") if isinstance(row.get("capture_dt"), datetime) else None,
                "raw_values": json.dumps(raw, default=str, ensure_ascii=False),
                "reason": str(row["reason"])[:1000],
                "rejected_dt": now,
            }
        )
    schema = {"source": pl.String, "row_key": pl.String, "sensor_id": pl.String, "loc_id": pl.String,
              "capture_dt": pl.Datetime("us"), "raw_values": pl.String, "reason": pl.String,
              "rejected_dt": pl.Datetime("us")}
    return pl.DataFrame(records, schema=schema)


def split_outliers(good: pl.DataFrame, mads: float, window: int = 30) -> tuple[pl.DataFrame, pl.DataFrame]:
    """(kept, outliers): readings more than `mads` scaled median absolute deviations away from the
    rolling median of their location's last `window` readings, for any measure.

    The deviation scale has a floor of 0.1 so a sensor that reported a flat line is not flagged
    for every small step.
    """
    ordered = good.sort("loc_id", "capture_dt")
    roll = dict(window_size=window, min_samples=5, center=True)
    ordered = ordered.with_columns(
        pl.col(m).rolling_median(**roll).over("loc_id").alias(f"_{m}_median") for m in MEASURES
    ).with_columns((pl.col(m) - pl.col(f"_{m}_median")).abs().alias(f"_{m}_dev") for m in MEASURES)
    ordered = ordered.with_columns(
        pl.col(f"_{m}_dev").rolling_median(**roll).over("loc_id").alias(f"_{m}_mad") for m in MEASURES
    )
    flags = [
        pl.when(pl.col(f"_{m}_dev") > mads * pl.max_horizontal(pl.col(f"_{m}_mad") * 1.4826, pl.lit(0.1))).then(
            pl.format(
                f"outlier: {m}=" + "{}" + f" is more than {mads:g} MADs from its rolling median " + "{}",
                m, pl.col(f"_{m}_median").round(2),
            )
        )
        for m in MEASURES
    ]
    helpers = [f"_{m}_{k}" for m in MEASURES for k in ("median", "dev", "mad")]
    marked = ordered.with_columns(pl.concat_str(flags, separator="; ", ignore_nulls=True).alias("reason")).drop(helpers)
    is_out = pl.col("reason").is_not_null() & (pl.col("reason") != "")
    return marked.filter(~is_out).drop("reason"), marked.filter(is_out)
