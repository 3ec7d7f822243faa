"""Tasks shared by the raw ingest flows: check tables, validate and load readings."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime

import polars as pl
from prefect import task
from prefect.logging import get_run_logger
from sqlalchemy import Table, inspect

from flows.core import readings
from flows.core.io import sql
from flows.core.io.sql import Database
from flows.core.schema import etl_watermark, sensors, temperature_raw, temperature_raw_reject
from flows.core.settings import plant_now
from flows.hourly_tasks import RETRYING, MissingTableError, require_tables

RAW_TABLES = [temperature_raw, temperature_raw_reject, sensors, etl_watermark]


@dataclass
class LoadReport:
    rows_read: int
    loaded: int
    rejected: int
    outliers: int


@task(name="check-raw-tables", **RETRYING)
async def check_raw_tables(iot: Database, device: Database | None = None, table: Table | None = None) -> None:
    """The IoT database (and the device table, when given) answer and hold the needed tables."""
    await require_tables(iot, RAW_TABLES)
    if device is not None and table is not None:
        async with device.engine.connect() as conn:
            have = await conn.run_sync(lambda c: inspect(c).has_table(table.name, schema=table.schema))
        if not have:
            raise MissingTableError(f"{device.describe()}: missing table {table.fullname}; check the device_table parameter")


@dataclass
class Validated:
    """One batch of device rows, validated: what to load, what to reject, and its watermark."""

    rows_read: int
    good: pl.DataFrame
    rejects: pl.DataFrame
    outliers: int
    latest: datetime | None = None  # the batch's newest watermark value


def validate_batch(
    rows: pl.DataFrame,
    sensor_map: pl.DataFrame,
    source: str,
    value_columns: Mapping[str, str],
    limits: Mapping[str, tuple[float, float]],
    outlier_mads: float | None,
    watermark_column: str | None = None,
    require_upload: bool = True,
) -> Validated:
    """Parse and check one batch of device rows (pure Polars: runs in a worker thread). Rows
    without an upload time are rejected unless `require_upload` is off (a table read by capture_dt)."""
    now = plant_now()
    parsed = readings.parse_device_rows(rows, sensor_map, value_columns, limits, source, now, require_upload)
    good, rejects, outliers = parsed.good, parsed.rejects, 0
    if outlier_mads is not None and good.height:
        good, flagged = readings.split_outliers(good, outlier_mads)
        outliers = flagged.height
        rejects = pl.concat([rejects, readings.rejects(flagged, list(flagged.columns[:-1]), source, now, ["loc_id", "capture_dt"])])
    latest = rows[watermark_column].max() if watermark_column and rows.height else None
    return Validated(rows.height, good, rejects, outliers, latest)  # type: ignore[arg-type]


@task(name="load-readings", **RETRYING)
async def load_readings(iot: Database, batch: Validated, source: str, job: str | None = None) -> LoadReport:
    """Load one validated batch, its rejects and (with `job`) the job's watermark, in one transaction."""
    watermark = (job, batch.latest) if job is not None and batch.latest is not None else None
    result = await sql.write_readings(iot, batch.good, batch.rejects, replace=True, watermark=watermark)
    logger = get_run_logger()
    logger.info(
        "%s: %d rows read, %d readings loaded, %d rejected (%d outliers), %d new reject rows",
        source, batch.rows_read, batch.good.height, batch.rejects.height, batch.outliers, result.rejected,
    )
    if batch.rejects.height:
        sample = [f"{sid} at {dt}: {why}" for sid, dt, why in batch.rejects.head(5).select("sensor_id", "capture_dt", "reason").rows()]
        logger.warning("%d readings rejected, e.g. %s", batch.rejects.height, "; ".join(sample))
    return LoadReport(batch.rows_read, batch.good.height, batch.rejects.height, batch.outliers)
