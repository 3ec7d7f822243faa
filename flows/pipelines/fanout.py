"""Scale-out: a backfill hands its chunks to the work pool as child deployment runs.

The successor of the seed's Celery workers: any number of workers on the pool share the chunks;
every chunk is idempotent, so a failed one is simply re-run.

Why it cannot deadlock: the children run on a work queue of their own (`backfill-chunks`), never
on the parents' `backfill` queue, and a child waits on nothing. A parent holds a slot of the
`backfill` queue (and of its worker) while it waits; its children need a slot of the chunk queue,
which only children hold, and a worker slot. As long as the pool's workers together have more
slots (`prefect worker start --limit N`) than the `backfill` queue's limit, some slot is always
free for a child (`montrg doctor` prints the rule). And no parent waits forever: each child has
`chunk_timeout_minutes` to finish, after which it is cancelled and reported as failed.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Any, TypeVar

from prefect.artifacts import acreate_progress_artifact, aupdate_progress_artifact
from prefect.logging import get_run_logger

from flows.domain.windows import Window
from flows.errors import ChunksFailed
from flows.settings import CHUNK_QUEUE

CHUNK_TAG = "fan-out-chunk"
T = TypeVar("T")


def artifact_key(base: str) -> str:
    """`base` for a run of its own or a fan-out's parent; `base-chunk` for a fan-out's child, so
    the children never overwrite the artifacts the parent shows."""
    from prefect.runtime import flow_run

    return f"{base}-chunk" if CHUNK_TAG in (flow_run.tags or []) else base


async def _chunk_queue(deployment_id: str) -> tuple[str, int | None]:
    """The deployment's pool and its chunk queue's concurrency limit; raises naming the command
    that creates the queue when it is missing."""
    from prefect.client.orchestration import get_client
    from prefect.exceptions import ObjectNotFound

    async with get_client() as client:
        pool = (await client.read_deployment(deployment_id)).work_pool_name
        try:
            queue = await client.read_work_queue_by_name(CHUNK_QUEUE, work_pool_name=pool)
        except ObjectNotFound:
            raise LookupError(
                f"work pool {pool!r} has no queue {CHUNK_QUEUE!r} for fanned-out chunks; create it with: "
                f"montrg pool create --pool {pool}"
            ) from None
    return pool, queue.concurrency_limit


def _logger() -> logging.Logger | logging.LoggerAdapter:
    """The run's logger (shown in the UI) inside a run, else this module's."""
    try:
        return get_run_logger()
    except Exception:  # MissingContextError: called outside a flow or task run
        return logging.getLogger(__name__)


API_RETRY_SECONDS = 300.0  # how long a parent keeps asking a Prefect API that does not answer (a restart)


def api_hiccup(exc: BaseException) -> bool:
    """True for errors of a Prefect API that is restarting or briefly away: no connection, a reset,
    a timeout, HTTP 502/503/504. Anything else (a 4xx, a bug) is not retried."""
    import httpx

    if isinstance(exc, (httpx.TransportError, ConnectionError, TimeoutError)):
        return True
    response = getattr(exc, "response", None)
    return getattr(response, "status_code", None) in (502, 503, 504)


async def with_api_retries(call: Callable[[], Awaitable[T]], what: str, patience: float = API_RETRY_SECONDS) -> T:
    """`call()`, again after a pause (1 s, doubling to 30 s) while the API has a hiccup, for up to
    `patience` seconds; then, or on any other error, the error itself."""
    loop = asyncio.get_running_loop()
    deadline, pause = loop.time() + patience, 1.0
    while True:
        try:
            return await call()
        except Exception as exc:
            if not api_hiccup(exc) or loop.time() + pause > deadline:
                raise
            _logger().warning("%s: the Prefect API did not answer (%s); asking again in %.0f s", what, type(exc).__name__, pause)
            await asyncio.sleep(pause)
            pause = min(pause * 2, 30.0)


async def _wait(run_id, timeout: float, what: str, poll: float = 2.0):
    """The flow run `run_id` once its state is final, or as it is after `timeout` seconds."""
    from prefect.client.orchestration import get_client

    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    async with get_client() as client:
        while True:
            run = await with_api_retries(lambda: client.read_flow_run(run_id), f"{what}: reading its state")
            if (run.state and run.state.is_final()) or loop.time() >= deadline:
                return run
            await asyncio.sleep(poll)


async def _cancel(run_id, why: str) -> None:
    from prefect.client.orchestration import get_client
    from prefect.states import Cancelled

    async with get_client() as client:
        await with_api_retries(lambda: client.set_flow_run_state(run_id, Cancelled(message=why), force=True), "cancelling a chunk")


CHUNK_ATTEMPTS = 2  # a child run that Crashed (its process died) runs once more


async def run_chunks_on_pool(
    pieces: list[Window],
    parameters: Callable[[Window], dict[str, Any]],
    name_of: Callable[[dict[str, Any], datetime], str],
    max_parallel: int,
    chunk_timeout_minutes: int,
    progress_key: str,
) -> list[dict[str, str]]:
    """Run one child deployment run per piece (this run's own deployment, on the chunk queue) and
    wait for them all, at most `max_parallel` at once and each at most `chunk_timeout_minutes`.

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
    pool, limit = await _chunk_queue(deployment.id)
    if limit is not None and limit < max_parallel:
        logger.warning(
            "max_parallel=%d, but the %r queue runs at most %d chunks at once (all backfills together); "
            "raise it with: montrg pool create --pool %s --chunk-slots %d", max_parallel, CHUNK_QUEUE, limit, pool, max_parallel,
        )
    gate = asyncio.Semaphore(max_parallel)
    progress = await acreate_progress_artifact(progress=0.0, key=progress_key, description=f"{len(pieces)} chunks on the pool")
    rows: list[dict[str, str]] = []
    timeout = chunk_timeout_minutes * 60

    async def one(piece: Window) -> None:
        params = parameters(piece)
        async with gate:
            for attempt in range(1, CHUNK_ATTEMPTS + 1):
                # created once even when asked twice (the idempotency key), then waited for here: an API
                # that restarts meanwhile is asked again, and the chunk is never orphaned or doubled
                key = f"{flow_run.id}:{piece.start.isoformat()}" + (f":{attempt}" if attempt > 1 else "")
                child = await with_api_retries(lambda key=key: run_deployment(
                    name, parameters=params, job_variables=job_variables, as_subflow=True, timeout=0,
                    work_queue_name=CHUNK_QUEUE, tags=[CHUNK_TAG], flow_run_name=name_of(params, datetime.now().astimezone()),
                    idempotency_key=key,
                ), f"chunk {piece}: creating its run")
                child = await _wait(child.id, timeout, f"chunk {piece}")
                state = child.state.name if child.state else "unknown"
                if state != "Crashed" or attempt == CHUNK_ATTEMPTS:
                    break
                # its process died (the worker, the container, a start during an outage): the chunk
                # is one idempotent transaction, so it runs once more, as a new child run
                logger.warning("chunk %s: child run %s Crashed; running it once more", piece, child.name)
            if not (child.state and child.state.is_final()):
                why = f"did not finish within chunk_timeout_minutes={chunk_timeout_minutes} (was {state})"
                await _cancel(child.id, why)
                state = f"TimedOut: {why}"
        rows.append({"chunk": str(piece), "flow_run": child.name, "state": state})
        await aupdate_progress_artifact(progress, 100.0 * len(rows) / len(pieces))
        logger.info("chunk %s: child run %s %s (%d of %d done)", piece, child.name, state, len(rows), len(pieces))

    logger.info(
        "handing %d chunks to the pool as runs of %s on queue %r, at most %d at once",
        len(pieces), name, CHUNK_QUEUE, max_parallel,
    )
    await asyncio.gather(*(one(p) for p in pieces))
    rows.sort(key=lambda r: r["chunk"])
    failed = [r for r in rows if r["state"] != "Completed"]
    if failed:
        raise ChunksFailed(
            f"{len(failed)} of {len(pieces)} chunks did not complete (re-run them; each chunk is idempotent): "
            + "; ".join(f"{r['chunk']} ({r['flow_run']}: {r['state']})" for r in failed)
        )
    return rows
