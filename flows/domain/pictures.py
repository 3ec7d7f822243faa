"""The plant-health pictures, the pure part: the data behind each picture, and the picture drawn
from it as PNG bytes (matplotlib, Agg backend, imported only when a picture is drawn).

- coverage grid: locations x hours, colour by coverage (readings received / expected), worst
  locations first (lowest mean coverage), at most 50 rows;
- limits charts: for the worst locations (highest open alarm, then lowest coverage), the hourly
  avg and max temperature against the plant's yellow/orange/red upper limits.
"""

from __future__ import annotations

import io
from datetime import datetime, timedelta

import polars as pl

from flows.domain.health import LEVEL_RANK

LEVEL_COLOURS = {"yellow": "#d4b000", "orange": "#e07000", "red": "#c00000"}


def coverage_grid(hourly: pl.DataFrame, expected: pl.DataFrame, hours: list[datetime], limit: int = 50) -> pl.DataFrame:
    """Per active location (rows, worst first) and hour: coverage, 0 where no row exists.
    Columns: loc_id, hour, coverage; at most `limit` locations."""
    active = expected.filter(pl.col("is_active")).select("loc_id")
    grid = active.join(pl.DataFrame({"hour": hours}, schema={"hour": pl.Datetime("us")}), how="cross")
    cov = grid.join(hourly.select("loc_id", "hour", "coverage"), on=["loc_id", "hour"], how="left").with_columns(
        pl.col("coverage").fill_null(0.0)
    )
    worst = cov.group_by("loc_id").agg(pl.col("coverage").mean().alias("_mean")).sort(["_mean", "loc_id"]).head(limit)
    return cov.join(worst, on="loc_id").sort(["_mean", "loc_id", "hour"]).drop("_mean")


def worst_locations(grid: pl.DataFrame, live: pl.DataFrame, count: int = 6) -> list[str]:
    """The `count` locations to chart: highest live alarm first, then lowest coverage."""
    rank = live.with_columns(pl.col("peak_level").replace_strict(LEVEL_RANK, default=0, return_dtype=pl.Int32).alias("_r"))
    top = rank.group_by("loc_id").agg(pl.col("_r").max())
    order = (
        grid.group_by("loc_id").agg(pl.col("coverage").mean().alias("_mean"))
        .join(top, on="loc_id", how="left").with_columns(pl.col("_r").fill_null(0))
        .sort(["_r", "_mean", "loc_id"], descending=[True, False, False])
    )
    return order["loc_id"].head(count).to_list()


def limit_series(hourly: pl.DataFrame, locations: list[str], thresholds: pl.DataFrame, hours: list[datetime],
                 measure: str = "temperature") -> tuple[pl.DataFrame, dict[str, float]]:
    """The hourly avg and max of `measure` of `locations` over `hours` (loc_id, hour, avg, max; one
    row per location and hour, null where the hour has no row, so a gap is drawn as a gap), and the
    plant default upper limit of each alert level of that measure."""
    frame = pl.DataFrame({"loc_id": locations}, schema={"loc_id": pl.String}).join(
        pl.DataFrame({"hour": hours}, schema={"hour": pl.Datetime("us")}), how="cross"
    )
    values = hourly.filter(pl.col("loc_id").is_in(locations)).select(
        "loc_id", pl.col("hour").cast(pl.Datetime("us")), pl.col(f"{measure}_avg").alias("avg"), pl.col(f"{measure}_max").alias("max")
    )
    series = frame.join(values, on=["loc_id", "hour"], how="left").sort("loc_id", "hour")
    plant = thresholds.filter(pl.col("is_active") & pl.col("loc_id").is_null() & (pl.col("threshold_type") == measure))
    limits = {lvl: hi for lvl, hi in plant.select("level", "max_value").iter_rows() if lvl in LEVEL_COLOURS and hi is not None}
    return series, limits


def _figure(width: float, height: float):  # noqa: ANN202 - a matplotlib Figure, imported here only
    import matplotlib

    matplotlib.use("Agg", force=True)
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), dpi=80, layout="constrained")


def _png(fig) -> bytes:  # noqa: ANN001
    out = io.BytesIO()
    fig.savefig(out, format="png", bbox_inches="tight")
    return out.getvalue()


def draw_coverage_grid(grid: pl.DataFrame) -> bytes:
    """The grid as a heat map: red = no readings, green = all expected readings."""
    locs = list(dict.fromkeys(grid["loc_id"].to_list()))
    hours = sorted(set(grid["hour"].to_list()))
    values = [[0.0] * len(hours) for _ in locs]
    row_of, col_of = {loc: i for i, loc in enumerate(locs)}, {h: j for j, h in enumerate(hours)}
    for loc, hour, cov in grid.iter_rows():
        values[row_of[loc]][col_of[hour]] = min(cov, 1.0)
    fig = _figure(10, 1.2 + 0.22 * max(len(locs), 1))
    ax = fig.subplots()
    image = ax.imshow(values or [[0.0]], aspect="auto", cmap="RdYlGn", vmin=0.0, vmax=1.0, interpolation="nearest")
    ax.set_yticks(range(len(locs)), locs, fontsize=7)
    ax.set_xticks(range(0, len(hours), 3), [f"{h:%d %H}h" for h in hours[::3]], fontsize=7, rotation=45)
    ax.set_title("coverage: readings received / expected, worst locations first")
    fig.colorbar(image, ax=ax, fraction=0.03)
    return _png(fig)


def draw_limit_charts(series: pl.DataFrame, limits: dict[str, float], locations: list[str], measure: str = "temperature") -> bytes:
    """One small chart per location: hourly avg and max against the level limits, over the hours
    of `series` (an hour without readings is a gap in the lines; a location without any says so)."""
    cols = min(max(len(locations), 1), 3)
    rows = max((len(locations) + cols - 1) // cols, 1)
    fig = _figure(4 * cols, 0.6 + 2.4 * rows)
    axes = fig.subplots(rows, cols, squeeze=False, sharex=True)
    hours = series["hour"].unique().sort().to_list()
    for n, ax in enumerate(a for row in axes for a in row):
        if n >= len(locations):
            ax.set_visible(False)
            continue
        data = series.filter(pl.col("loc_id") == locations[n]).sort("hour")
        x = data["hour"].to_list()
        for column, colour in (("max", "#444444"), ("avg", "#1f77b4")):
            ax.plot(x, data[column].fill_null(float("nan")).to_list(), label=column, color=colour, linewidth=1, marker=".", markersize=3)
        for level, value in limits.items():
            ax.axhline(value, color=LEVEL_COLOURS[level], linestyle="--", linewidth=0.8, label=level)
        if data["max"].is_null().all():
            ax.text(0.5, 0.5, "no readings in these hours", transform=ax.transAxes, ha="center", va="center", fontsize=8, color="#c00000")
        if hours:
            ax.set_xlim(hours[0] - timedelta(minutes=30), hours[-1] + timedelta(minutes=30))
        ax.set_title(locations[n], fontsize=9)
        ax.tick_params(labelsize=6)
        ax.tick_params(axis="x", labelrotation=30)
        if n == 0:
            ax.legend(fontsize=6)
    fig.suptitle(f"{measure}: hourly avg and max against the plant limits")
    return _png(fig)
