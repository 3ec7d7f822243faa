"""temperature_backfill: re-aggregate a range (replaces flet_montrg_temperature_backfill)."""

from __future__ import annotations

import asyncio
import time

from prefect.artifacts import acreate_progress_artifact, acreate_table_artifact, aupdate_progress_artifact
from prefect.logging import get_run_logger

from blocks import open_database
from flows import store
from flows.domain.backfill import backfill_plan
from flows.pipelines.fanout import artifact_key, run_chunks_on_pool
from flows.pipelines.hourly import ETL_JOB, RunReport, check_connections, plan_chunks, process_chunks, read_context
from flows.pipelines.params import Flag, TimeBound, Whole, checked, flow
from flows.pipelines.run_names import backfill_name, runtime_name
from flows.settings import (
    DEFAULT_SOURCE_BLOCK,
    DEFAULT_TARGET_BLOCK,
    earliest_time,
    plant_now,
    plant_tz,
)


@flow(name="temperature-backfill", flow_run_name=runtime_name(backfill_name), validate_parameters=False)
@checked
async def temperature_backfill(
    start: TimeBound,
    end: TimeBound,
    chunk_hours: Whole | None = None,
    source_block: str = DEFAULT_SOURCE_BLOCK,
    target_block: str = DEFAULT_TARGET_BLOCK,
    fan_out: Flag = False,
    max_parallel: Whole = 4,
    chunk_timeout_minutes: Whole = 180,
) -> RunReport:
    """Re-aggregate the hourly table for a range, chunk by chunk, touching nothing outside it.

    Dates are whole days and `end` is inclusive: start=2024-01-01 end=2024-01-31 is all of
    January. Datetimes are a half-open range [start, end), widened to whole hours. Times are plant
    local unless they carry an offset. A range reaching into the future stops at the last full
    hour. Each chunk is one transaction, so a failed run can simply be run again.

    Args:
        start: First day (YYYY-MM-DD) or first hour (YYYY-MM-DDTHH:MM) of the range.
        end: Last day, inclusive (YYYY-MM-DD), or the end hour, exclusive (YYYY-MM-DDTHH:MM).
        chunk_hours: Hours per chunk (one read, one transaction, one task run), 1..744; memory
            grows with it. Empty: chosen from the range and its readings (a day, less where a day
            holds millions). A range of more than 10,000 chunks is refused with a size that fits.
        source_block: Database block of the IoT database (raw readings).
        target_block: Database block of the HQ database (hourly aggregates).
        fan_out: Hand the chunks to the work pool as child runs of this deployment, so several
            workers share a big backfill; off: all chunks in this run.
        max_parallel: With fan_out, the most chunks of this run running at once (the pool's
            `backfill-chunks` queue limits all backfills together).
        chunk_timeout_minutes: With fan_out, how long a chunk may take from its creation to its
            end; a chunk still waiting or running then is cancelled and reported as failed.
    """
    window, _ = backfill_plan(  # the range, chunk_hours and the chunk limit, checked before any work
        start, end, chunk_hours, max_parallel, chunk_timeout_minutes, plant_now(), plant_tz(), earliest_time()
    )
    logger = get_run_logger()
    report = RunReport(str(window), [])
    async with open_database(source_block) as source, open_database(target_block) as target:
        versions = await check_connections(source, target)
        ctx = await read_context(source, target)  # once: the plan and the chunks judge by the same first reading
        plan = await plan_chunks(source, window, chunk_hours, ctx.horizon)
        logger.info("%s", plan.describe())
        logger.info("%s", versions)
        await acreate_table_artifact(key=artifact_key("temperature-backfill-plan"), table=plan.table(), description=f"temperature-backfill {window}: the plan")
        if fan_out:
            params = dict(chunk_hours=plan.chunk_hours, source_block=source_block, target_block=target_block, fan_out=False)
            report.children = await run_chunks_on_pool(
                plan.pieces, lambda p: {"start": p.start.isoformat(), "end": p.end.isoformat(), **params}, backfill_name,
                max_parallel, chunk_timeout_minutes, "temperature-backfill",
            )
            await acreate_table_artifact(key="temperature-backfill-summary", table=report.table(), description=f"temperature-backfill {window}, fanned out")
            return report
        progress = await acreate_progress_artifact(
            progress=0.0, key=artifact_key("temperature-backfill"), description=f"temperature-backfill {window}"
        )

        shown = time.monotonic()

        async def progressed(number: int, _chunk) -> None:
            """The progress artifact at most once a second (each update is a call to the server), and at the end."""
            nonlocal shown
            done = 100.0 * number / len(plan.pieces)
            if number == len(plan.pieces) or time.monotonic() - shown >= 1.0:
                await aupdate_progress_artifact(progress, done)
                shown = time.monotonic()
            logger.info("progress: chunk %d of %d done (%.0f%%)", number, len(plan.pieces), done)

        try:
            async with asyncio.timeout(plan.timeout_seconds):
                report.chunks = await process_chunks(source, target, plan.pieces, after_each=progressed, ctx=ctx)
        except TimeoutError:
            raise TimeoutError(
                f"backfill {window} did not finish within its plan's {plan.timeout_seconds:,.0f} s; "
                "the chunks done are kept, rerun it or a smaller range"
            ) from None
        await store.extend_watermark(target, ETL_JOB, window.start, window.end, plant_now())
    await acreate_table_artifact(
        key=artifact_key("temperature-backfill-summary"), table=report.table(), description=f"temperature-backfill {window}"
    )
    totals = report.totals
    logger.info(
        "backfill %s done: %d raw rows -> %d location-hours (%d new, %d updated, %d unchanged)",
        window, totals["raw_rows"], totals["location_hours"], totals["inserted"], totals["updated"], totals["unchanged"],
    )
    return report
