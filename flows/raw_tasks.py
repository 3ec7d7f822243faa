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


@task(name="load-readings", **RETRYING)
async def load_readings(
    iot: Database,
    rows: pl.DataFrame,
    source: str,
    value_columns: Mapping[str, str],
    limits: Mapping[str, tuple[float, float]],
    outlier_mads: float | None,
    watermark: tuple[str, datetime] | None = None,
) -> LoadReport:
    """Validate rows of the device table and load them, with their rejects, in one transaction."""
    sensor_map = await sql.read_sensors(iot)
    now = plant_now()
    parsed = readings.parse_device_rows(rows, sensor_map, value_columns, limits, source, now)
    good, rejects, outliers = parsed.good, parsed.rejects, 0
    if outlier_mads is not None and good.height:
        good, flagged = readings.split_outliers(good, outlier_mads)
        outliers = flagged.height
        rejects = pl.concat([rejects, readings.rejects(flagged, list(flagged.columns[:-1]), source, now, ["loc_id", "capture_dt"])])
    result = await sql.write_readings(iot, good, rejects, replace=True, watermark=watermark)
    logger = get_run_logger()
    logger.info(
        "%s: %d rows read, %d readings loaded, %d rejected (%d outliers), %d new reject rows",
        source, rows.height, good.height, rejects.height, outliers, result.rejected,
    )
    if rejects.height:
        sample = [f"{sid} at {dt}: {why}" for sid, dt, why in rejects.head(5).select("sensor_id", "capture_dt", "reason").rows()]
        logger.warning("%d readings rejected, e.g. %s", rejects.height, "; ".join(sample))
    return LoadReport(rows.height, good.height, rejects.height, outliers)
