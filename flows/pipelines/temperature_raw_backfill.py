"""temperature_raw_backfill: reload raw readings for a capture_dt range
(replaces Airflow's flet_montrg_temperature_raw_backfill)."""

from __future__ import annotations

import asyncio

from prefect.artifacts import acreate_progress_artifact, acreate_table_artifact, aupdate_progress_artifact
from prefect.logging import get_run_logger

from flows import store
from flows.domain import readings
from flows.domain.backfill import backfill_plan
from flows.pipelines.fanout import artifact_key, run_chunks_on_pool
from flows.pipelines.params import Flag, TimeBound, Whole, checked, flow
from flows.pipelines.raw import LoadReport, check_batch, check_reading_params, iot_block_of, load_readings, open_raw_databases
from flows.pipelines.run_names import raw_backfill_name, runtime_name
from flows.pipelines.streams import ahead
from flows.settings import (
    DEFAULT_DEVICE_BLOCK,
    DEFAULT_DEVICE_TABLE,
    DEFAULT_IOT_BLOCK,
    earliest_time,
    plant_now,
    plant_tz,
)
from flows.store.schema import device_table as device_table_def


@flow(name="temperature-raw-backfill", flow_run_name=runtime_name(raw_backfill_name), validate_parameters=False)
@checked
async def temperature_raw_backfill(
    start: TimeBound,
    end: TimeBound,
    chunk_hours: Whole = 24,
    device_block: str = DEFAULT_DEVICE_BLOCK,
    device_table: str = DEFAULT_DEVICE_TABLE,
    iot_block: str = DEFAULT_IOT_BLOCK,
    value_columns: dict[str, str] = readings.DEFAULT_VALUE_COLUMNS,
    limits: dict[str, list[float]] | None = None,
    outlier_mads: float | None = None,
    fan_out: Flag = False,
    max_parallel: Whole = 4,
    chunk_timeout_minutes: Whole = 180,
    source_block: str | None = None,
) -> list[LoadReport] | list[dict[str, str]]:
    """Reload the device table's readings whose capture_dt lies in a range, chunk by chunk.

    Range rules as temperature_backfill: dates are whole days with `end` inclusive, datetimes
    half-open. Validation and rejects as temperature_raw_etl. Each chunk is one transaction;
    nothing is deleted, inside the range or outside it, and the incremental watermark is left
    alone. Running it twice gives the same tables.

    Args:
        start: First day (YYYY-MM-DD) or hour (YYYY-MM-DDTHH:MM) of capture_dt.
        end: Last day, inclusive, or the end hour, exclusive.
        chunk_hours: Hours of capture_dt per chunk.
        device_block: Database block of the device table's database.
        device_table: The device table, 'table' or 'schema.table'.
        iot_block: Database block of the IoT database the readings are loaded into.
        value_columns: Which text column holds each measure.
        limits: Physical limits per measure as [low, high].
        outlier_mads: Off when empty; else the outlier filter's width in MADs.
        fan_out: Hand the chunks to the work pool as child runs of this deployment.
        max_parallel: With fan_out, the most chunks of this run running at once (the pool's
            `backfill-chunks` queue limits all backfills together).
        chunk_timeout_minutes: With fan_out, how long a chunk may take from its creation to its
            end; a chunk still waiting or running then is cancelled and reported as failed.
        source_block: Deprecated name of iot_block (still accepted, with a warning).
    """
    window, pieces = backfill_plan(
        start, end, chunk_hours, max_parallel, chunk_timeout_minutes, plant_now(), plant_tz(), earliest_time()
    )
    iot_block = iot_block_of(iot_block, source_block)
    columns, bounds = check_reading_params(value_columns, limits, outlier_mads)
    table = device_table_def(device_table)
    origin = f"device:{device_block}/{device_table}"
    logger = get_run_logger()
    if fan_out:
        params = dict(
            chunk_hours=chunk_hours, device_block=device_block, device_table=device_table, iot_block=iot_block,
            value_columns=columns, limits={m: list(b) for m, b in bounds.items()}, outlier_mads=outlier_mads, fan_out=False,
        )
        return await run_chunks_on_pool(
            pieces, lambda p: {"start": p.start.isoformat(), "end": p.end.isoformat(), **params}, raw_backfill_name,
            max_parallel, chunk_timeout_minutes, "temperature-raw-backfill",
        )
    reports: list[LoadReport] = []
    async with open_raw_databases(device_block, table, iot_block) as (device, iot):
        progress = await acreate_progress_artifact(progress=0.0, key=artifact_key("temperature-raw-backfill"), description=str(window))
        sensor_map = await store.read_sensors(iot)

        async def checked():  # the next chunk is read and checked while this one is written
            for piece in pieces:
                rows = await store.read_device_range(device, table, piece.start, piece.end)
                yield piece, await asyncio.to_thread(check_batch, rows, sensor_map, origin, columns, bounds, outlier_mads)

        number = 0
        async for piece, batch in ahead(checked()):
            reports.append(await load_readings(iot, batch, origin))
            number += 1
            await aupdate_progress_artifact(progress, 100.0 * number / len(pieces))
            logger.info("chunk %d of %d (%s): %d rows", number, len(pieces), piece, batch.rows_read)
    await acreate_table_artifact(
        key=artifact_key("temperature-raw-backfill-summary"),
        table=[{"chunk": str(p), **vars(r)} for p, r in zip(pieces, reports)],
        description=f"{origin} {window} -> temperature_raw",
    )
    return reports
