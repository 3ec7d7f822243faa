"""Scale-out: a backfill hands its chunks to the work pool as child deployment runs.

The successor of the seed's Celery workers: any number of workers on the pool share the chunks;
at most `max_parallel` run at once; every chunk is idempotent, so a failed one is simply re-run.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from prefect.artifacts import acreate_progress_artifact, aupdate_progress_artifact
from prefect.logging import get_run_logger

from flows.core.windows import Window


class ChunksFailed(RuntimeError):
    """Some child runs did not complete; the message lists their ranges, for a re-run."""


async def run_chunks_on_pool(
    pieces: list[Window], parameters: Callable[[Window], dict[str, Any]], max_parallel: int, progress_key: str
) -> list[dict[str, str]]:
    """Run one child deployment run per piece (this run's own deployment) and wait for them all.

    Returns one row per chunk (range, child run, state); raises ChunksFailed naming every chunk
    that did not complete, after all have finished.
    """
    from prefect.deployments import run_deployment
    from prefect.runtime import deployment, flow_run

    if not deployment.id:
        raise ValueError(
            "fan_out=true hands chunks to the work pool as runs of this flow's deployment, so it needs a "
            "deployment run (prefect deployment run ...); run in-process with fan_out=false"
        )
    name = f"{flow_run.flow_name}/{deployment.name}"
    job_variables = flow_run.job_variables or {}
    logger = get_run_logger()
    gate = asyncio.Semaphore(max_parallel)
    progress = await acreate_progress_artifact(progress=0.0, key=progress_key, description=f"{len(pieces)} chunks on the pool")
    rows: list[dict[str, str]] = []

    async def one(piece: Window) -> None:
        async with gate:
            child = await run_deployment(
                name, parameters=parameters(piece), job_variables=job_variables, as_subflow=True, timeout=None, poll_interval=2
            )
        state = child.state.name if child.state else "unknown"
        rows.append({"chunk": str(piece), "flow_run": child.name, "state": state})
        await aupdate_progress_artifact(progress, 100.0 * len(rows) / len(pieces))
        logger.info("chunk %s: child run %s %s (%d of %d done)", piece, child.name, state, len(rows), len(pieces))

    logger.info("handing %d chunks to the pool as runs of %s, at most %d at once", len(pieces), name, max_parallel)
    await asyncio.gather(*(one(p) for p in pieces))
    rows.sort(key=lambda r: r["chunk"])
    failed = [r for r in rows if r["state"] != "Completed"]
    if failed:
        raise ChunksFailed(
            f"{len(failed)} of {len(pieces)} chunks did not complete (re-run them; each chunk is idempotent): "
            + "; ".join(f"{r['chunk']} ({r['flow_run']}: {r['state']})" for r in failed)
        )
    return rows
