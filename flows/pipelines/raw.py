"""Tasks shared by the raw ingest flows: the IoT block and reading parameters, table checks, checking
and loading batches of readings."""

from __future__ import annotations

import warnings
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, replace
from datetime import datetime

import polars as pl
from prefect import task
from prefect.logging import get_run_logger
from sqlalchemy import Table, inspect

from blocks import open_database
from flows import store
from flows.domain import readings
from flows.domain.windows import HOUR, Window
from flows.errors import MissingTableError
from flows.pipelines.policy import RETRYING, answering, require_tables
from flows.settings import DEFAULT_IOT_BLOCK, plant_limits, plant_now, plant_tz
from flows.store import Database
from flows.store.adbc import import_driver_early
from flows.store.schema import etl_watermark, sensors, temperature_raw, temperature_raw_reject

RAW_TABLES = [temperature_raw, temperature_raw_reject, sensors, etl_watermark]


@dataclass
class LoadReport:
    """One batch of device rows: rows_read = loaded + rejected + replaced."""

    rows_read: int
    loaded: int
    rejected: int  # kept aside in temperature_raw_reject with the reason (outliers among them)
    outliers: int
    replaced: int = 0  # an upload of a reading that a later upload in the same batch replaced


@task(name="check-raw-tables", **RETRYING)
async def check_raw_tables(iot: Database) -> None:
    """The IoT database answers and holds the tables the raw load writes."""
    await require_tables(iot, RAW_TABLES, writes="iot_block (the IoT database the readings are loaded into)")


@task(name="check-device-table", **RETRYING)
async def check_device_table(device: Database, table: Table) -> None:
    """The device table's database answers and holds `table` (checked first: it is what the raw
    flows read, so a gateway database that does not answer is named before anything else)."""
    async with answering(device, f"looking for {table.fullname}"), device.engine.connect() as conn:
        have = await conn.run_sync(lambda c: inspect(c).has_table(table.name, schema=table.schema))
    if not have:
        raise MissingTableError(f"{device.describe()}: missing table {table.fullname}; check the device_table parameter")


@asynccontextmanager
async def open_raw_databases(device_block: str, table: Table, iot_block: str) -> AsyncIterator[tuple[Database, Database]]:
    """(device, iot), each checked: the device table first, then the IoT database."""
    async with open_database(device_block) as device:
        import_driver_early(device)  # the device table is read through ADBC on PostgreSQL
        await check_device_table(device, table)
        async with open_database(iot_block) as iot:
            await check_raw_tables(iot)
            yield device, iot


def iot_block_of(iot_block: str, source_block: str | None) -> str:
    """The IoT database block of a raw flow, from `iot_block` or the deprecated `source_block` (its
    name before 0.2, still accepted with a warning so that no deployment breaks)."""
    if source_block is None:
        return iot_block
    if iot_block not in (DEFAULT_IOT_BLOCK, source_block):
        raise ValueError(f"source_block={source_block!r} and iot_block={iot_block!r} disagree: give iot_block only")
    message = f"source_block={source_block!r} is deprecated: the IoT database is iot_block now (same meaning)"
    warnings.warn(message, DeprecationWarning, stacklevel=2)
    get_run_logger().warning(message)
    return source_block


def check_reading_params(
    value_columns: Mapping[str, str], limits: Mapping[str, object] | None, outlier_mads: float | None
) -> tuple[dict[str, str], dict[str, tuple[float, float]]]:
    """The raw flows' reading parameters checked alike: (value columns, physical limits over the
    plant's), or a ValueError naming the bad one."""
    if outlier_mads is not None and not outlier_mads > 0:
        raise ValueError(f"outlier_mads={outlier_mads!r} must be positive (or empty for off)")
    return readings.check_value_columns(value_columns), readings.check_limits(limits or {}, plant_limits())


@dataclass
class CheckedBatch:
    """One batch of device rows, checked: what to load, what to reject, and its watermark."""

    rows_read: int
    good: pl.DataFrame
    rejects: pl.DataFrame
    outliers: int
    latest: datetime | None = None  # the batch's newest watermark value
    repeated: pl.DataFrame | None = None  # good rows in a repeated DST hour (readings.Parsed.repeated)
    replaced: int = 0  # uploads replaced by a later upload of the same reading in the batch


def check_batch(
    rows: pl.DataFrame,
    sensor_map: pl.DataFrame,
    origin: str,
    value_columns: Mapping[str, str],
    limits: Mapping[str, tuple[float, float]],
    outlier_mads: float | None,
    watermark_column: str | None = None,
    require_upload: bool = True,
) -> CheckedBatch:
    """Parse and check one batch of device rows read from `origin` (pure Polars: runs in a worker
    thread). Rows without an upload time are rejected unless `require_upload` is off (a table read
    by capture_dt)."""
    now = plant_now()
    parsed = readings.parse_device_rows(rows, sensor_map, value_columns, limits, origin, now, require_upload, plant_tz())
    good, rejects, outliers = parsed.good, parsed.rejects, 0
    if outlier_mads is not None and good.height:
        good, flagged = readings.split_outliers(good, outlier_mads)
        outliers = flagged.height
        rejects = pl.concat([rejects, readings.rejects(flagged, list(flagged.columns[:-1]), origin, now, ["loc_id", "capture_dt"])])
    latest = rows[watermark_column].max() if watermark_column and rows.height else None
    return CheckedBatch(rows.height, good, rejects, outliers, latest, parsed.repeated, parsed.replaced)  # type: ignore[arg-type]


async def set_aside_repeated(iot: Database, batch: CheckedBatch, origin: str) -> CheckedBatch:
    """The batch without the readings of a repeated (daylight-saving) hour that conflict with a
    stored one (readings.repeated_conflicts): they go to its rejects. Batches load in order, so
    earlier batches of this run are seen here."""
    if batch.repeated is None or not batch.repeated.height:
        return batch
    hours = batch.repeated["capture_dt"].dt.truncate("1h")
    stored = await store.read_raw(iot, Window(hours.min(), hours.max() + HOUR))  # type: ignore[operator]
    conflicts, set_aside = readings.repeated_conflicts(batch.repeated, stored, origin, plant_now())
    if not conflicts.height:
        return batch
    good = batch.good.join(conflicts, on=["loc_id", "capture_dt"], how="anti")
    return replace(batch, good=good, rejects=pl.concat([batch.rejects, set_aside]), repeated=None)


@task(name="load-readings", **RETRYING)
async def load_readings(iot: Database, batch: CheckedBatch, origin: str, job: str | None = None) -> LoadReport:
    """Load one checked batch from `origin`, its rejects and (with `job`) the job's watermark, in one transaction."""
    batch = await set_aside_repeated(iot, batch, origin)
    watermark = (job, batch.latest) if job is not None and batch.latest is not None else None
    result = await store.write_readings(iot, batch.good, batch.rejects, replace=True, watermark=watermark)
    logger = get_run_logger()
    logger.info(
        "%s: %d rows read, %d readings loaded, %d rejected (%d outliers), %d new reject rows, "
        "%d replaced by a later upload of the same reading",
        origin, batch.rows_read, batch.good.height, batch.rejects.height, batch.outliers, result.rejected, batch.replaced,
    )
    if batch.rejects.height:
        sample = [f"{sid} at {dt}: {why}" for sid, dt, why in batch.rejects.head(5).select("sensor_id", "capture_dt", "reason").rows()]
        logger.warning("%d readings rejected, e.g. %s", batch.rejects.height, "; ".join(sample))
    return LoadReport(batch.rows_read, batch.good.height, batch.rejects.height, batch.outliers, batch.replaced)
