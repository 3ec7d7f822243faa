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


async def test_a_bad_parameter_is_one_line_from_python_the_cli_and_the_ui_alike(deployed, prefect_env):
    """The same one line for a bad value, whether the flow is called from Python, started with
    `prefect deployment run --param`, or from the UI (its call: create_flow_run_from_deployment)."""
    from prefect.client.orchestration import get_client

    from flows import temperature_backfill
    from flows.errors import ParameterError

    line = "start='2024-13-01' is not a date 'YYYY-MM-DD' or a datetime 'YYYY-MM-DDTHH:MM[:SS][+09:00]'"
    with pytest.raises(ValueError) as called:
        await temperature_backfill(start="2024-13-01", end="2024-01-02")
    assert str(called.value) == line
    with pytest.raises(ParameterError) as called:
        await temperature_backfill(start="2024-01-01", end="2024-01-02", fan_out="yes")
    assert str(called.value) == "fan_out='yes' is not true or false"

    cli = subprocess.run(
        [str(Path(sys.executable).with_name("prefect")), "deployment", "run", "temperature-backfill/backfill-process",
         "--param", "start=2024-13-01", "--param", "end=2024-01-02"],
        env=prefect_env, capture_output=True, text=True, timeout=120, cwd=ROOT,
    )
    assert cli.returncode == 0, cli.stdout + cli.stderr
    async with get_client() as client:
        d = await client.read_deployment_by_name("temperature-backfill/backfill-process")
        ui = await client.create_flow_run_from_deployment(d.id, parameters={"start": "2024-13-01", "end": "2024-01-02"})
        worker = subprocess.run(
            [str(Path(sys.executable).with_name("prefect")), "worker", "start", "--pool", POOL, "--run-once"],
            env=prefect_env, capture_output=True, text=True, timeout=300, cwd=ROOT,
        )
        assert worker.returncode == 0, worker.stdout[-2000:] + worker.stderr[-2000:]
        runs = await client.read_flow_runs()
        ours = [r for r in runs if r.deployment_id == d.id and r.parameters.get("start") == "2024-13-01"]
        assert len(ours) == 2 and ui.id in {r.id for r in ours}
        for run in ours:
            assert run.state.is_failed(), run.state
            assert line in run.state.message and "\n" not in run.state.message.strip(), run.state.message
