"""prefect.yaml deployed for real (without an image, to a process pool) and checked on the server."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from flows.settings import CHUNK_QUEUE

ROOT = Path(__file__).resolve().parents[1]
POOL = "montrg-process-test"


@pytest.fixture(scope="module")
def deployed(prefect_env):
    done = subprocess.run(
        [str(Path(sys.executable).with_name("montrg")), "pool", "create", "--pool", POOL, "--type", "process", "--backfill-slots", "2"],
        env=prefect_env, capture_output=True, text=True, timeout=120, cwd=ROOT,
    )
    assert done.returncode == 0, done.stderr
    done = subprocess.run(
        [sys.executable, "-m", "deployments.process_deploy", "--pool", POOL],
        env=prefect_env, capture_output=True, text=True, timeout=300, cwd=ROOT,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return yaml.safe_load((ROOT / "prefect.yaml").read_text())["deployments"]


async def test_every_deployment_of_prefect_yaml_is_on_the_server_as_defined(deployed):
    from prefect.client.orchestration import get_client

    async with get_client() as client:
        for spec in deployed:
            flow_name = spec["entrypoint"].split(":")[1].replace("_", "-")
            d = await client.read_deployment_by_name(f"{flow_name}/{spec['name']}-process")
            assert d.work_pool_name == POOL and d.work_queue_name == spec["work_pool"]["work_queue_name"]
            assert set(spec["tags"]) <= set(d.tags)
            assert {k: v for k, v in d.parameters.items() if k in spec.get("parameters", {})} == spec.get("parameters", {})
            got = [(s.schedule.cron, s.schedule.timezone) for s in d.schedules]
            assert got == [(s["cron"], s["timezone"]) for s in spec.get("schedules", [])]
            if "concurrency_limit" in spec:
                assert d.global_concurrency_limit is not None and d.global_concurrency_limit.limit == 1
                assert d.concurrency_options.collision_strategy.value == "ENQUEUE"


async def test_queues_put_backfills_last_and_limit_them(deployed):
    from prefect.client.orchestration import get_client

    async with get_client() as client:
        queues = {q.name: q for q in await client.read_work_queues(work_pool_name=POOL)}
    assert queues["hourly"].priority < queues["default"].priority < queues[CHUNK_QUEUE].priority < queues["backfill"].priority
    assert queues["backfill"].concurrency_limit == 2 and queues[CHUNK_QUEUE].concurrency_limit == 4


async def test_backfill_deployment_accepts_dates_and_datetimes_as_the_cli_sends_them(deployed):
    from prefect.client.orchestration import get_client
    from prefect.exceptions import PrefectHTTPStatusError

    async with get_client() as client:
        d = await client.read_deployment_by_name("temperature-backfill/backfill-process")
        for start, end in (("2024-01-01", "2024-01-31"), ("2024-01-01T00:00:00", "2024-01-02T06:00:00+09:00")):
            run = await client.create_flow_run_from_deployment(d.id, parameters={"start": start, "end": end})
            assert run.parameters["start"] == start
            await client.delete_flow_run(run.id)
        with pytest.raises(PrefectHTTPStatusError):  # the schema still rejects what is not text or a date
            await client.create_flow_run_from_deployment(d.id, parameters={"start": [1, 2], "end": "2024-01-02"})
