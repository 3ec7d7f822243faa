"""Plant health, the pure part: coverage of each location-hour, coverage alerts, the plan that
records the alerts of some hours, and the health table (what notifies: flows.domain.episodes).

Coverage is an hour's raw rows over the readings expected in it: 3600 s over the location's
polling interval (`locations.poll_interval_s`, else MONTRG_POLL_INTERVAL_S). An active location
whose ended hour holds fewer than MONTRG_COVERAGE_MIN of them raises a `coverage` alert at level
orange, and one with no readings at all also at red (levels stack as a threshold's do).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

import polars as pl

from flows.domain.alerts import ALERT_KEYS
from flows.domain.measures import ALERT_LEVELS

COVERAGE = "coverage"  # the measure of coverage alerts
LEVEL_RANK = {level: rank for rank, level in enumerate(ALERT_LEVELS, start=1)}
COVERAGE_DECIMALS = 4


def _rank() -> pl.Expr:
    """The rank of `level` (LEVEL_RANK; 0 for anything else)."""
    return pl.col("level").replace_strict(LEVEL_RANK, default=0, return_dtype=pl.Int32)


def expected_readings(locations: pl.DataFrame, default_interval_s: float) -> pl.DataFrame:
    """Per location (loc_id, is_active): readings expected in an hour, from its polling interval."""
    interval = pl.col("poll_interval_s").cast(pl.Float64).fill_null(default_interval_s)
    return locations.select("loc_id", "is_active", (3600.0 / interval).alias("expected"))


def with_coverage(hourly: pl.DataFrame, expected: pl.DataFrame, default_interval_s: float) -> pl.DataFrame:
    """`hourly` with `coverage` = sample_count / expected readings (a location not in the master
    data is expected at the plant default), rounded to 4 decimals."""
    joined = hourly.join(expected.select("loc_id", "expected"), on="loc_id", how="left")
    share = pl.col("sample_count") / pl.col("expected").fill_null(3600.0 / default_interval_s)
    return joined.with_columns(share.round(COVERAGE_DECIMALS).alias("coverage")).drop("expected")


def hours_of(start: datetime, end: datetime) -> list[datetime]:
    """The hour starts in [start, end)."""
    count = int((end - start) / timedelta(hours=1))
    return [start + timedelta(hours=n) for n in range(max(count, 0))]


def coverage_alerts(
    hourly: pl.DataFrame, expected: pl.DataFrame, hours: list[datetime], coverage_min: float
) -> pl.DataFrame:
    """Coverage alerts of the active locations in `hours` (ended hours only; the caller picks them).

    An hour with no row in `hourly` had no readings: coverage 0, so both orange and red."""
    if not hours:
        return _empty_alerts()
    active = expected.filter(pl.col("is_active")).select("loc_id", "expected")
    grid = active.join(pl.DataFrame({"alert_time": hours}, schema={"alert_time": pl.Datetime("us")}), how="cross")
    counts = hourly.select("loc_id", pl.col("hour").alias("alert_time"), "sample_count")
    measured = grid.join(counts, on=["loc_id", "alert_time"], how="left").with_columns(
        pl.col("sample_count").fill_null(0),
        (pl.col("sample_count").fill_null(0) / pl.col("expected")).round(COVERAGE_DECIMALS).alias("measured_value"),
    )
    low = measured.filter(pl.col("measured_value") < coverage_min)
    levels = pl.concat([
        low.with_columns(level=pl.lit("orange"), threshold_min=pl.lit(coverage_min)),
        low.filter(pl.col("sample_count") == 0).with_columns(level=pl.lit("red"), threshold_min=pl.lit(0.0)),
    ])
    message = pl.format(
        "{} coverage at {} {}: {} of {} expected readings ({}%), below {}%",
        "loc_id", pl.col("alert_time").dt.strftime("%Y-%m-%d %H:00"), "level", "sample_count",
        pl.col("expected").round(0).cast(pl.Int64), (pl.col("measured_value") * 100).round(1),
        pl.lit(round(coverage_min * 100, 1)),
    )
    return (
        levels.with_columns(
            measure=pl.lit(COVERAGE),
            threshold_max=pl.lit(None, pl.Float64),
            message=pl.when(pl.col("sample_count") == 0)
            .then(pl.format("{} sent no readings at {} ({} expected)", "loc_id",
                            pl.col("alert_time").dt.strftime("%Y-%m-%d %H:00"), pl.col("expected").round(0).cast(pl.Int64)))
            .otherwise(message),
        )
        .select(*ALERT_KEYS, "measured_value", "threshold_min", "threshold_max", "message")
        .sort(ALERT_KEYS)
    )


def _empty_alerts() -> pl.DataFrame:
    return pl.DataFrame(schema={
        "loc_id": pl.String, "alert_time": pl.Datetime("us"), "measure": pl.String, "level": pl.String,
        "measured_value": pl.Float64, "threshold_min": pl.Float64, "threshold_max": pl.Float64, "message": pl.String,
    })


@dataclass
class AlertPlan:
    """What to write into `alerts` for the hours a chunk judged: `new` breaches (inserted open),
    `known` ones (values refreshed, open again if they were resolved: `reopened`), the open alerts
    that no longer breach (`resolve`, by alert_id), and `current`: the alerts open in those hours
    once the plan is carried out (what the alarm episodes follow, flows.domain.episodes)."""

    new: pl.DataFrame
    known: pl.DataFrame
    reopened: pl.DataFrame
    resolve: list[int]
    current: pl.DataFrame

    @property
    def opened(self) -> pl.DataFrame:
        return pl.concat([self.new, self.reopened])


CURRENT = [*ALERT_KEYS, "measured_value", "threshold_min", "threshold_max", "message"]


def plan_alerts(breaches: pl.DataFrame, recorded: pl.DataFrame, spare: pl.DataFrame) -> AlertPlan:
    """Make the `recorded` alerts of some hours (alert_id, ALERT_KEYS, status, and the CURRENT
    values) equal the `breaches` found in them, except those of the location-hours in `spare`
    (loc_id, hour: left out, not recomputed), which are left as they are.

    A breach already recorded is kept once (its values refreshed); a resolved one that breaches
    again is re-opened; an open alert that no longer breaches is resolved. Announcing is the
    episodes' part (flows.domain.episodes), not the hours'."""
    keys = list(ALERT_KEYS)
    kept_out = spare.select("loc_id", pl.col("hour").alias("alert_time"))
    breaches = breaches.join(kept_out, on=["loc_id", "alert_time"], how="anti")
    left_alone = recorded.join(kept_out, on=["loc_id", "alert_time"], how="semi").filter(status="open")
    recorded = recorded.join(kept_out, on=["loc_id", "alert_time"], how="anti")
    known = breaches.join(recorded.select(keys), on=keys, how="semi")
    return AlertPlan(
        new=breaches.join(recorded.select(keys), on=keys, how="anti"),
        known=known,
        reopened=known.join(recorded.filter(status="resolved").select(keys), on=keys, how="semi"),
        resolve=recorded.filter(status="open").join(breaches.select(keys), on=keys, how="anti")["alert_id"].to_list(),
        current=pl.concat([breaches.select(CURRENT), left_alone.select(CURRENT)], how="vertical_relaxed"),
    )


def health_table(
    hourly: pl.DataFrame, expected: pl.DataFrame, open_alerts: pl.DataFrame, hours: list[datetime], limit: int = 50
) -> tuple[list[dict[str, object]], int]:
    """Per active location (and any location with an open alert): coverage of each of `hours`
    and the open alerts, worst first (highest open level, then lowest coverage in the last hour).
    Returns at most `limit` rows and how many locations were left out of them."""
    cov = hourly.select("loc_id", "hour", "coverage")
    locs = pl.concat([expected.filter(pl.col("is_active")).select("loc_id"), open_alerts.select("loc_id")]).unique()
    grid = locs.join(pl.DataFrame({"hour": hours}, schema={"hour": pl.Datetime("us")}), how="cross")
    cov = grid.join(cov, on=["loc_id", "hour"], how="left").with_columns(pl.col("coverage").fill_null(0.0))
    wide = cov.group_by("loc_id").agg(
        pl.col("coverage").sort_by("hour").alias("by_hour"), pl.col("coverage").sort_by("hour").last().alias("lowest")
    )
    top = (
        open_alerts.with_columns(_rank().alias("rank"))
        .sort("rank", descending=True)
        .group_by("loc_id", maintain_order=True)
        .agg(pl.col("level").first().alias("worst"), pl.col("rank").first(),
             pl.format("{} {} {}", "level", "measure", pl.col("alert_time").dt.strftime("%H:00")).alias("open"))
    )
    rows = (
        wide.join(top, on="loc_id", how="left")
        .with_columns(pl.col("rank").fill_null(0))
        .sort(["rank", "lowest", "loc_id"], descending=[True, False, False])
    )
    out = []
    for row in rows.head(limit).iter_rows(named=True):
        record: dict[str, object] = {"location": row["loc_id"], "worst open alert": row["worst"] or "-"}
        for hour, share in zip(hours, row["by_hour"]):
            record[f"{hour:%H}:00"] = f"{share:.0%}"
        opened = row["open"] or []
        record["open alerts"] = ", ".join(opened[:4]) + (f" (+{len(opened) - 4})" if len(opened) > 4 else "")
        out.append(record)
    return out, max(rows.height - limit, 0)


def alarm_table(live: pl.DataFrame, mutes: pl.DataFrame, limit: int = 50) -> list[str]:
    """Markdown lines of the live alarm episodes (flows.domain.episodes), highest level first, then
    the oldest, and of the locations muted: what the plant-health artifact shows above its table."""
    lines: list[str] = []
    if not live.is_empty():
        rank = pl.col("peak_level").replace_strict(LEVEL_RANK, default=0, return_dtype=pl.Int32)
        rows = live.sort([rank, pl.col("first_hour")], descending=[True, False])
        lines += ["| alarm | location | measure | peak | since | last bad hour | state |", "|---|---|---|---|---|---|---|"]
        for r in rows.head(limit).iter_rows(named=True):
            state = f"acknowledged by {r['acked_by']}" if r["state"] == "acknowledged" else r["state"]
            lines.append(f"| {r['episode_id']} | {r['loc_id']} | {r['measure']} | {r['peak_level']} | "
                         f"{r['first_hour']:%Y-%m-%d %H:00} | {r['last_hour']:%Y-%m-%d %H:00} | {state} |")
        if rows.height > limit:
            lines.append(f"\n... and {rows.height - limit} more open alarms: montrg alarms list --open")
    for r in mutes.iter_rows(named=True):
        lines.append(f"\n- {r['loc_id']} muted {r['starts_dt']:%Y-%m-%d %H:%M} .. {r['until_dt']:%Y-%m-%d %H:%M}: {r['reason']}")
    return lines
