"""temperature_etl: the hourly aggregation (replaces Airflow's flet_montrg_temperature_etl)."""

from __future__ import annotations

from datetime import datetime

import polars as pl
from prefect.artifacts import acreate_markdown_artifact, acreate_table_artifact
from prefect.logging import get_run_logger
from prefect.runtime import flow_run

from blocks import open_database
from flows import store
from flows.domain import health
from flows.domain.windows import DAY, HOUR, Window, check_hours, chunks, etl_window
from flows.pipelines.hourly import ETL_JOB, RunReport, check_connections, process_chunks
from flows.pipelines.params import Hour, Whole, checked, flow
from flows.pipelines.run_names import etl_name, runtime_name
from flows.pipelines.stuck_runs import look_after_stuck_runs
from flows.settings import (
    DEFAULT_SOURCE_BLOCK,
    DEFAULT_TARGET_BLOCK,
    earliest_time,
    plant_now,
    plant_tz,
    poll_interval_seconds,
)
from flows.store import Database

JOB = ETL_JOB
HEALTH_HOURS = 6  # the hours the plant-health artifact's table shows
GRID_HOURS, CHART_HOURS = 24, 48  # the hours of its coverage grid and of its limits charts


@flow(name="temperature-etl", flow_run_name=runtime_name(etl_name), timeout_seconds=30 * 60, validate_parameters=False)
@checked
async def temperature_etl(
    hour: Hour = None,
    lookback_hours: Whole = 3,
    chunk_hours: Whole = 24,
    max_catchup_hours: Whole = 24 * 7,
    source_block: str = DEFAULT_SOURCE_BLOCK,
    target_block: str = DEFAULT_TARGET_BLOCK,
) -> RunReport:
    """Aggregate raw readings into hourly max/avg/min per location (flet_montrg.temperature).

    Reads `temperature_raw` of the IoT database (`source_block`), computes per location and hour
    the max, average, min and count of temperature, humidity and PCV temperature over the non-null
    readings, upserts them into `temperature` of the HQ database (`target_block`) and checks what
    was written. Re-running an hour gives the same table.

    Args:
        hour: The hour to aggregate, plant local time (Asia/Seoul unless MONTRG_PLANT_TZ says
            otherwise), truncated to the hour. Empty: the last full hour before this run's
            scheduled time, and any hours missed since the last successful scheduled run.
        lookback_hours: Hours before `hour` that are aggregated again, so late readings count.
        chunk_hours: Hours processed per transaction when catching up.
        max_catchup_hours: The most missed hours one scheduled run catches up; a longer gap is
            reported with the backfill to run and left for it.
        source_block: Database block of the IoT database (raw readings).
        target_block: Database block of the HQ database (hourly aggregates).
    """
    check_hours(lookback_hours, "lookback_hours", 0, 24 * 31)
    check_hours(chunk_hours, "chunk_hours", 1, 24 * 31)
    check_hours(max_catchup_hours, "max_catchup_hours", 0, 24 * 366)
    logger = get_run_logger()
    await look_after_stuck_runs(logger)
    window = etl_window(hour, flow_run.scheduled_start_time, lookback_hours, plant_tz(), earliest_time(), plant_now() + DAY)
    async with open_database(source_block) as source, open_database(target_block) as target:
        logger.info("%s", await check_connections(source, target))
        scheduled = hour is None
        watermark = await store.get_watermark(target, JOB) if scheduled else None
        if watermark is not None and watermark < window.start:
            earliest = window.end - max_catchup_hours * HOUR
            if watermark >= earliest:
                logger.info("catching up the hours since the last run: %s", Window(watermark, window.start))
                window = Window(watermark, window.end)
            else:
                logger.warning(
                    "the hours %s were missed and exceed max_catchup_hours=%d; run: "
                    "prefect deployment run 'temperature-backfill/<deployment>' --param start=%s --param end=%s",
                    Window(watermark, window.start), max_catchup_hours,
                    watermark.isoformat(), window.start.isoformat(),
                )
        logger.info("window %s (plant time), %d hours", window, window.hours)
        report = RunReport(str(window), await process_chunks(source, target, chunks(window, chunk_hours)))
        if scheduled:
            await store.extend_watermark(target, JOB, window.start, window.end, plant_now(), create=True)
        await publish_health(target, window.end)
    await acreate_table_artifact(
        key="temperature-etl", table=report.table(), description=f"temperature-etl {window}"
    )
    if report.totals["raw_rows"] == 0:
        logger.info("no raw readings in %s: nothing written", window)
    return report


async def publish_health(target: Database, end: datetime) -> None:
    """The `plant-health` artifact: the open alarms (episodes) and the muted locations, the pictures
    (pictures_markdown), then per location the coverage of the HEALTH_HOURS hours before `end` and the open alerts of those hours,
    worst first; the UI answers "is the data healthy?"."""
    shown = Window(end - HEALTH_HOURS * HOUR, end)
    hours = health.hours_of(shown.start, shown.end)
    charted = await store.read_hourly(target, Window(end - CHART_HOURS * HOUR, end))
    hourly = charted.filter(pl.col("hour") >= shown.start)
    expected = health.expected_readings(await store.read_locations(target), poll_interval_seconds())
    open_alerts = await store.read_open_alerts(target, shown.start, shown.end - HOUR)
    rows, more = health.health_table(hourly, expected, open_alerts, hours)
    live, mutes = await store.read_episodes(target, live_only=True), await store.read_mutes(target, plant_now())
    alarms = health.alarm_table(live, mutes)
    alarms = [f"## Open alarms: {live.height}", "", *alarms, ""] if alarms else []
    if not rows:
        markdown = "\n".join([f"# Plant health, {shown}", "", *alarms, "No active locations in the master data and no open alerts."])
    else:
        head = list(rows[0])
        lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        lines += ["| " + " | ".join(str(r[k]) for k in head) + " |" for r in rows]
        worst = sum(1 for r in rows if r["worst open alert"] != "-")
        markdown = "\n".join([
            f"# Plant health, {shown} (plant time)", "",
            *alarms,
            *pictures_markdown(charted, expected, live, await store.read_thresholds(target), end),
            "## Coverage and open alerts by hour", "",
            f"{len(rows) + more} locations; {worst} with open alerts; coverage = readings received / expected.", "",
            *lines, *([f"\n... and {more} more locations, all healthier than these."] if more else []),
        ])
    await acreate_markdown_artifact(key="plant-health", markdown=markdown, description=f"plant health {shown}")


def pictures_markdown(hourly: pl.DataFrame, expected: pl.DataFrame, live: pl.DataFrame, limits: pl.DataFrame, end: datetime) -> list[str]:
    """The coverage grid of the last GRID_HOURS hours and the worst 6 locations' limits charts over
    `hourly` (CHART_HOURS), as markdown images the Prefect UI shows inline (PNG data URIs; checked
    in the Prefect UI in a headless Chromium: tests/test_ui_artifact.py). A picture that cannot be drawn does not fail
    the run: the markdown says why, and the log too."""
    import base64

    from flows.domain import pictures

    def image(alt: str, png: bytes) -> str:
        return f"![{alt}](data:image/png;base64,{base64.b64encode(png).decode()})"

    try:
        grid = pictures.coverage_grid(hourly, expected, health.hours_of(end - GRID_HOURS * HOUR, end))
        if grid.is_empty():
            return []
        worst = pictures.worst_locations(grid, live)
        series, levels = pictures.limit_series(hourly, worst, limits, health.hours_of(end - CHART_HOURS * HOUR, end))
        return [
            f"## Coverage, the last {GRID_HOURS} hours (worst first)", "", image("coverage grid", pictures.draw_coverage_grid(grid)), "",
            f"## Temperature against the limits, the worst {len(worst)} locations, {CHART_HOURS} hours", "",
            image("limits charts", pictures.draw_limit_charts(series, levels, worst)), "",
        ]
    except Exception as exc:  # a picture is a view of data already written and verified
        get_run_logger().warning("plant-health pictures not drawn: %s: %s", type(exc).__name__, exc)
        return [f"(pictures not drawn: {type(exc).__name__}: {exc})", ""]
