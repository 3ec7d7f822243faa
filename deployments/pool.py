"""Create or update the work pool, its base job template defaults and its queues.

    montrg pool create [--pool montrg-docker] [--type docker] [--no-registry]
                       [--backfill-slots 2] [--chunk-slots 4]
    (the same: .venv/bin/python -m deployments.pool ...)

Queues, lower priority number served first: `hourly` (the hourly job, raw ingest, collection),
`default` (master sync), `backfill-chunks` (the chunks a fanned-out backfill hands to the pool)
and `backfill` (backfills themselves). `backfill` and `backfill-chunks` have concurrency limits, so
backfills never starve the hourly job, and the chunks have a queue of their own, so a parent
waiting for its chunks never holds a slot they need (flows/pipelines/fanout.py explains why that cannot
deadlock).

A scheduled run carries no job variables of its own: it runs with the deployment's and the pool's
base job template defaults. For the Docker pool those defaults are set here: finished containers
are removed (`auto_remove`), the image is pulled only when it is not on the host (`IfNotPresent`;
the image is tagged by version, so a new version is a new tag), and with `--no-registry` (hosts
that build their image locally and reach no registry, the databases and the API on the host's
127.0.0.1) the image is never pulled and containers use the host's network.

Idempotent: an existing pool gets the template defaults and queues updated, not duplicated.
"""

from __future__ import annotations

import argparse
import asyncio
import copy
from typing import Any

from flows.settings import CHUNK_QUEUE, DEFAULT_POOL

QUEUES = {  # name: (priority, description)
    "hourly": (1, "the hourly job, raw ingest and sensor collection"),
    "default": (2, "master sync and anything else"),
    CHUNK_QUEUE: (5, "chunks of fanned-out backfills (child runs); limited, served before new backfills"),
    "backfill": (10, "backfills (a fanned-out one waits here for its chunks); limited, served last"),
}


def docker_defaults(no_registry: bool) -> dict[str, Any]:
    """The Docker job variables that every run of the pool gets unless its deployment says otherwise."""
    defaults: dict[str, Any] = {"auto_remove": True, "image_pull_policy": "Never" if no_registry else "IfNotPresent"}
    if no_registry:
        defaults["network_mode"] = "host"
    return defaults


def with_defaults(template: dict[str, Any], defaults: dict[str, Any]) -> dict[str, Any]:
    """`template` with its variables' defaults set to `defaults`."""
    out = copy.deepcopy(template)
    properties = out["variables"]["properties"]
    for name, value in defaults.items():
        if name not in properties:
            raise ValueError(f"the pool's job template has no variable {name!r}; is it a Docker pool?")
        properties[name]["default"] = value
    return out


async def ensure_pool(
    pool: str,
    backfill_slots: int = 2,
    pool_type: str = "docker",
    chunk_slots: int = 4,
    no_registry: bool = False,
) -> list[str]:
    """Create or update the pool (the worker type's template with our defaults) and its queues."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.actions import WorkPoolCreate, WorkPoolUpdate
    from prefect.exceptions import ObjectNotFound

    done = []
    async with get_client() as client:
        try:
            existing = await client.read_work_pool(pool)
        except ObjectNotFound:
            existing = None
        kind = existing.type if existing else pool_type
        if kind == "docker":
            from prefect_docker.worker import DockerWorker

            defaults = docker_defaults(no_registry)
            template = with_defaults(existing.base_job_template if existing else DockerWorker.get_default_base_job_template(), defaults)
        elif no_registry:
            raise ValueError(f"--no-registry is for Docker pools; pool {pool!r} is of type {kind!r}")
        else:
            from prefect.workers.process import ProcessWorker

            defaults = {}
            template = existing.base_job_template if existing else ProcessWorker.get_default_base_job_template()
        if existing is None:
            await client.create_work_pool(WorkPoolCreate(name=pool, type=kind, base_job_template=template))
            done.append(f"created work pool {pool} ({kind})")
        elif defaults:
            await client.update_work_pool(pool, WorkPoolUpdate(base_job_template=template))
        if defaults:
            done.append("job defaults: " + ", ".join(f"{k}={v}" for k, v in defaults.items()))
        for name, (priority, description) in QUEUES.items():
            limit = {"backfill": backfill_slots, CHUNK_QUEUE: chunk_slots}.get(name)
            try:
                queue = await client.read_work_queue_by_name(name, work_pool_name=pool)
                await client.update_work_queue(queue.id, priority=priority, concurrency_limit=limit, description=description)
            except ObjectNotFound:
                await client.create_work_queue(
                    name, work_pool_name=pool, priority=priority, concurrency_limit=limit, description=description
                )
            done.append(f"queue {name}: priority {priority}" + (f", at most {limit} runs at once" if limit else ""))
    done.append(
        f"start workers with: prefect worker start --pool {pool} --type {kind} --limit N "
        f"(the workers' limits together must exceed the backfill queue's {backfill_slots})"
    )
    return done


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--pool", default=DEFAULT_POOL, help=f"work pool name (default {DEFAULT_POOL})")
    parser.add_argument("--type", default="docker", choices=["docker", "process"], help="worker type of a new pool")
    parser.add_argument(
        "--no-registry", action="store_true",
        help="Docker hosts without a registry: never pull the image, run containers on the host's network",
    )
    parser.add_argument("--backfill-slots", type=int, default=2, help="backfills running at once (default 2)")
    parser.add_argument("--chunk-slots", type=int, default=4, help="fanned-out chunks running at once, all backfills together (default 4)")


def run(args: argparse.Namespace) -> int:
    for name in ("backfill_slots", "chunk_slots"):
        if not 1 <= getattr(args, name) <= 1000:
            raise ValueError(f"--{name.replace('_', '-')}={getattr(args, name)} must be 1..1000")
    for line in asyncio.run(ensure_pool(args.pool, args.backfill_slots, args.type, args.chunk_slots, args.no_registry)):
        print(line)
    return 0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_arguments(parser)
    raise SystemExit(run(parser.parse_args()))


if __name__ == "__main__":
    main()
