"""Tasks shared by the raw ingest flows: check tables, validate and load readings."""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, replace
from datetime import datetime

import polars as pl
from prefect import task
from prefect.logging import get_run_logger
from sqlalchemy import Table, inspect

from blocks import open_database
from flows.core import readings
from flows.core.errors import MissingTableError
from flows.core.io import sql
from flows.core.io.sql import Database
from flows.core.schema import etl_watermark, sensors, temperature_raw, temperature_raw_reject
from flows.core.settings import plant_now, plant_tz
from flows.core.windows import HOUR, Window
from flows.task_policy import RETRYING, answering, require_tables

RAW_TABLES = [temperature_raw, temperature_raw_reject, sensors, etl_watermark]


@dataclass
class LoadReport:
    rows_read: int
    loaded: int
    rejected: int
    outliers: int


@task(name="check-raw-tables", **RETRYING)
async def check_raw_tables(iot: Database) -> None:
    """The IoT database answers and holds the tables the raw load writes."""
    await require_tables(iot, RAW_TABLES, writes="source_block (the IoT database the readings are loaded into)")


@task(name="check-device-table", **RETRYING)
async def check_device_table(device: Database, table: Table) -> None:
    """The device table's database answers and holds `table` (checked first: it is what the raw
    flows read, so a gateway database that does not answer is named before anything else)."""
    async with answering(device, f"looking for {table.fullname}"), device.engine.connect() as conn:
        have = await conn.run_sync(lambda c: inspect(c).has_table(table.name, schema=table.schema))
    if not have:
        raise MissingTableError(f"{device.describe()}: missing table {table.fullname}; check the device_table parameter")


@asynccontextmanager
async def open_raw_databases(device_block: str, table: Table, source_block: str) -> AsyncIterator[tuple[Database, Database]]:
    """(device, iot), each checked: the device table first, then the IoT database."""
    async with open_database(device_block) as device:
        await check_device_table(device, table)
        async with open_database(source_block) as iot:
            await check_raw_tables(iot)
            yield device, iot


@dataclass
class Validated:
    """One batch of device rows, validated: what to load, what to reject, and its watermark."""

    rows_read: int
    good: pl.DataFrame
    rejects: pl.DataFrame
    outliers: int
    latest: datetime | None = None  # the batch's newest watermark value
    repeated: pl.DataFrame | None = None  # good rows in a repeated DST hour (readings.Parsed.repeated)


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
    parsed = readings.parse_device_rows(rows, sensor_map, value_columns, limits, source, now, require_upload, plant_tz())
    good, rejects, outliers = parsed.good, parsed.rejects, 0
    if outlier_mads is not None and good.height:
        good, flagged = readings.split_outliers(good, outlier_mads)
        outliers = flagged.height
        rejects = pl.concat([rejects, readings.rejects(flagged, list(flagged.columns[:-1]), source, now, ["loc_id", "capture_dt"])])
    latest = rows[watermark_column].max() if watermark_column and rows.height else None
    return Validated(rows.height, good, rejects, outliers, latest, parsed.repeated)  # type: ignore[arg-type]


async def set_aside_repeated(iot: Database, batch: Validated, source: str) -> Validated:
    """In a repeated (daylight-saving) hour, a reading whose (loc_id, capture_dt) already holds a
    different reading is another reading of the same naive time, not a correction: it goes to the
    rejects with the reason instead of overwriting the first (loading the same reading again
    changes nothing). Batches load in order, so earlier batches of this run are seen here."""
    if batch.repeated is None or not batch.repeated.height:
        return batch
    keys = ["loc_id", "capture_dt"]
    hours = batch.repeated["capture_dt"].dt.truncate("1h")
    stored = await sql.read_raw(iot, Window(hours.min(), hours.max() + HOUR))  # type: ignore[operator]
    measures = list(readings.MEASURES)
    joined = batch.repeated.join(stored.select(*keys, *(pl.col(m).alias(f"{m}_stored") for m in measures)), on=keys, how="inner")
    differs = pl.any_horizontal(*(pl.col(m).ne_missing(pl.col(f"{m}_stored")) for m in measures))
    conflicts = joined.filter(differs).with_columns(reason=readings.repeated_reason(pl.col("capture_dt")))
    if not conflicts.height:
        return batch
    original = [c for c in batch.repeated.columns if c not in (*measures, "loc_id", "_bad")]
    set_aside = readings.rejects(conflicts, original, source, plant_now(), readings.DEVICE_ROW_IDENTITY)
    good = batch.good.join(conflicts.select(keys), on=keys, how="anti")
    return replace(batch, good=good, rejects=pl.concat([batch.rejects, set_aside]), repeated=None)


@task(name="load-readings", **RETRYING)
async def load_readings(iot: Database, batch: Validated, source: str, job: str | None = None) -> LoadReport:
    """Load one validated batch, its rejects and (with `job`) the job's watermark, in one transaction."""
    batch = await set_aside_repeated(iot, batch, source)
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
