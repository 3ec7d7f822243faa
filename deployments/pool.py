"""Create or update the Docker work pool and its queues.

    python -m deployments.pool [--pool montrg-docker] [--backfill-slots 4] [--type docker]

Lower priority number = served first: `hourly` (the hourly job, raw ingest, collection) before
`default` (master sync) before `backfill`, which also has a concurrency limit, so backfills never
starve the hourly job. Idempotent: existing pool and queues are updated, not duplicated.
"""

from __future__ import annotations

import argparse
import asyncio

QUEUES = {  # name: (priority, description)
    "hourly": (1, "the hourly job, raw ingest and sensor collection"),
    "default": (2, "master sync and anything else"),
    "backfill": (10, "backfills and their fanned-out chunks; limited, served last"),
}


async def ensure_pool(pool: str, backfill_slots: int, pool_type: str = "docker") -> list[str]:
    """Create the pool (with the worker type's default job template) and its queues."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.actions import WorkPoolCreate
    from prefect.exceptions import ObjectNotFound

    done = []
    async with get_client() as client:
        try:
            await client.read_work_pool(pool)
        except ObjectNotFound:
            if pool_type == "docker":
                from prefect_docker.worker import DockerWorker

                template = DockerWorker.get_default_base_job_template()
            else:
                from prefect.workers.process import ProcessWorker

                template = ProcessWorker.get_default_base_job_template()
            await client.create_work_pool(WorkPoolCreate(name=pool, type=pool_type, base_job_template=template))
            done.append(f"created work pool {pool} ({pool_type})")
        for name, (priority, description) in QUEUES.items():
            limit = backfill_slots if name == "backfill" else None
            try:
                queue = await client.read_work_queue_by_name(name, work_pool_name=pool)
                await client.update_work_queue(queue.id, priority=priority, concurrency_limit=limit, description=description)
            except ObjectNotFound:
                await client.create_work_queue(
                    name, work_pool_name=pool, priority=priority, concurrency_limit=limit, description=description
                )
            done.append(f"queue {name}: priority {priority}" + (f", at most {limit} runs at once" if limit else ""))
    return done


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pool", default="montrg-docker")
    parser.add_argument("--type", default="docker", choices=["docker", "process"])
    parser.add_argument("--backfill-slots", type=int, default=4)
    args = parser.parse_args()
    for line in asyncio.run(ensure_pool(args.pool, args.backfill_slots, args.type)):
        print(line)


if __name__ == "__main__":
    main()
