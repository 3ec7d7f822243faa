"""temperature_raw_etl: new rows of the gateways' device table into temperature_raw
(replaces Airflow's flet_montrg_temperature_raw_etl, which ran every 10 minutes)."""

from __future__ import annotations

import asyncio
from datetime import timedelta

from prefect.artifacts import acreate_table_artifact
from prefect.logging import get_run_logger

from flows import store
from flows.domain import readings
from flows.domain.windows import check_range
from flows.pipelines.params import checked, flow
from flows.pipelines.raw import LoadReport, check_batch, check_reading_params, iot_block_of, load_readings, open_raw_databases
from flows.pipelines.run_names import raw_etl_name, runtime_name
from flows.pipelines.streams import ahead
from flows.pipelines.stuck_runs import look_after_stuck_runs
from flows.settings import DEFAULT_DEVICE_BLOCK, DEFAULT_DEVICE_TABLE, DEFAULT_IOT_BLOCK, check_identifier
from flows.store.schema import device_table as device_table_def


@flow(name="temperature-raw-etl", flow_run_name=runtime_name(raw_etl_name), timeout_seconds=30 * 60, validate_parameters=False)
@checked
async def temperature_raw_etl(
    device_block: str = DEFAULT_DEVICE_BLOCK,
    device_table: str = DEFAULT_DEVICE_TABLE,
    iot_block: str = DEFAULT_IOT_BLOCK,
    watermark_column: str = "upload_dt",
    overlap_minutes: int = 30,
    batch_rows: int = 100_000,
    value_columns: dict[str, str] = readings.DEFAULT_VALUE_COLUMNS,
    limits: dict[str, list[float]] | None = None,
    outlier_mads: float | None = None,
    source_block: str | None = None,
) -> list[LoadReport]:
    """Copy new readings from the gateways' device table into temperature_raw (IoT database).

    Reads the rows whose upload time is after this table's watermark (minus `overlap_minutes`, so
    rows uploaded late or committed out of order are not missed), maps sensor_id to loc_id through
    the sensors table and t1/t2/t3 to temperature/humidity/pcv_temperature, and checks every
    value. Empty, non-numeric, NaN or out-of-limit values and unknown sensors go to
    temperature_raw_reject with the original values and the reason. Readings, rejects and the
    watermark are written in one transaction per batch: a failed load leaves the watermark where
    it was, and loading the same rows again changes nothing (a later upload of the same reading
    replaces it).

    Args:
        device_block: Database block of the device table's database.
        device_table: The device table, 'table' or 'schema.table'.
        iot_block: Database block of the IoT database the readings are loaded into
            (temperature_raw, sensors).
        watermark_column: The device table's upload time (or capture_dt where it has none).
        overlap_minutes: How far before the watermark each run reads again.
        batch_rows: Rows per transaction.
        value_columns: Which text column holds each measure.
        limits: Physical limits per measure as [low, high]; defaults: temperature -40..125,
            humidity 0..100, pcv_temperature -40..200.
        outlier_mads: Off when empty; else readings further than this many median absolute
            deviations from their location's rolling median are rejected as outliers.
        source_block: Deprecated name of iot_block (still accepted, with a warning).
    """
    iot_block = iot_block_of(iot_block, source_block)
    columns, bounds = check_reading_params(value_columns, limits, outlier_mads)
    check_identifier(watermark_column, "watermark_column")
    if watermark_column not in ("upload_dt", "capture_dt"):
        raise ValueError(f"watermark_column={watermark_column!r} must be 'upload_dt' or 'capture_dt'")
    check_range(overlap_minutes, "overlap_minutes", 0, 7 * 24 * 60, "minutes")
    check_range(batch_rows, "batch_rows", 1, 5_000_000, "rows")
    table = device_table_def(device_table)
    job = f"temperature-raw-etl:{device_block}:{device_table}"
    origin = f"device:{device_block}/{device_table}"
    logger = get_run_logger()
    await look_after_stuck_runs(logger)
    reports: list[LoadReport] = []
    async with open_raw_databases(device_block, table, iot_block) as (device, iot):
        watermark = await store.get_watermark(iot, job)
        after = None if watermark is None else watermark - timedelta(minutes=overlap_minutes)
        logger.info("reading %s with %s after %s, %d rows per batch", origin, watermark_column, after or "the beginning", batch_rows)
        sensor_map = await store.read_sensors(iot)

        by_upload = watermark_column == "upload_dt"

        async def reading():
            if by_upload:  # rows without an upload time: never in the incremental read, rejected as such
                async for rows in store.iter_device_rows(device, table, watermark_column, None, None, batch_rows, missing=True):
                    yield rows
            async for rows in store.iter_device_rows(device, table, watermark_column, after, None, batch_rows, max(batch_rows // 8, 1)):
                yield rows

        # a pipeline: batch k+1 is read and checked while batch k is written. Reading and checking
        # a batch take about a quarter of its write, so a third stage (reading k+2 while checking
        # k+1) gained no time and held one batch more: 30 MB of peak memory at 100k rows
        async def checked():
            async for rows in reading():  # the first batch is small, to start loading early
                yield await asyncio.to_thread(
                    check_batch, rows, sensor_map, origin, columns, bounds, outlier_mads, watermark_column, by_upload
                )

        async for batch in ahead(checked()):
            reports.append(await load_readings(iot, batch, origin, job))
        logger.info("%d rows of %s in %d batches", sum(r.rows_read for r in reports), origin, len(reports))
    await acreate_table_artifact(
        key="temperature-raw-etl",
        table=[{"batch": i + 1, **vars(r)} for i, r in enumerate(reports)] or [{"batch": 0, "rows_read": 0}],
        description=f"{origin} -> temperature_raw",
    )
    return reports
