"""End to end on a real Docker work pool, set up as the README says and then left alone: the pool
from `montrg pool create --no-registry`, the image built by prefect.yaml's build step, every flow
deployed with `prefect --no-prompt deploy --all`, `montrg doctor --pause-unready`, and runs
executed in containers by `prefect worker start --type docker`. No run here carries job
variables: they get what a scheduled run gets (the deployment's and the pool's defaults).
Slow (an image build); CI runs it.
"""

from __future__ import annotations

import asyncio
import re
import subprocess
import sys
import time
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from blocks import create_block
from flows import store
from flows.domain.windows import floor_hour
from flows.ops.simulate import readings
from flows.settings import CHUNK_QUEUE, plant_now
from tests import scenario
from tests.helpers import assert_matches_reference, reference, target_rows

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[1]
POOL = "montrg-docker"  # prefect.yaml's pool
BASE = "local/pybase:bookworm"
BIN = Path(sys.executable).parent


def sh(*cmd: str, env: dict[str, str], timeout: float = 900) -> subprocess.CompletedProcess:
    done = subprocess.run(cmd, env=env, cwd=ROOT, capture_output=True, text=True, timeout=timeout)
    assert done.returncode == 0, f"{' '.join(cmd)}\n{done.stdout[-4000:]}\n{done.stderr[-4000:]}"
    return done


@pytest.fixture(scope="module")
def deployed(prefect_env):
    """Docker up, the local base image, the pool, every deployment built and registered, and the
    schedules of deployments that lack their prerequisites paused by `montrg doctor`."""
    started = time.monotonic()
    sh("bash", "deployments/docker-engine.sh", env=prefect_env, timeout=300)
    sh("bash", "deployments/local-base-image.sh", BASE, env=prefect_env, timeout=600)
    env = {
        **prefect_env,
        "MONTRG_BASE_IMAGE": BASE,
        "MONTRG_DOCKER_BUILD_NETWORK": "host",  # build containers reach the package index like the host
        "MONTRG_IMAGE": "flet-montrg-e2e",
    }
    env.pop("MONTRG_REGISTRY", None)
    env.pop("MONTRG_IMAGE_TAG", None)  # tagged by version, as in production
    sh(str(BIN / "montrg"), "pool", "create", "--pool", POOL, "--no-registry", env=env)
    deploy = sh(str(BIN / "prefect"), "--no-prompt", "deploy", "--all", env=env, timeout=1200)
    assert "push skipped" in deploy.stdout
    doctor = sh(str(BIN / "montrg"), "doctor", "--pool", POOL, "--pause-unready", env=env)
    print(f"\ndocker e2e set-up (engine, base image, build, deploy): {time.monotonic() - started:.0f} s")
    return env, doctor.stdout


async def wait_final(run_id, timeout: float = 600):
    from prefect.client.orchestration import get_client

    deadline = time.monotonic() + timeout
    async with get_client() as client:
        while True:
            run = await client.read_flow_run(run_id)
            if run.state and run.state.is_final():
                return run
            assert time.monotonic() < deadline, f"flow run {run_id} still {run.state.name if run.state else '?'}"
            await asyncio.sleep(2)


async def test_setup_pauses_what_lacks_prerequisites_and_tags_the_image_by_version(deployed):
    from prefect.client.orchestration import get_client

    _, doctor = deployed
    async with get_client() as client:
        pool = await client.read_work_pool(POOL)
        raw = await client.read_deployment_by_name("temperature-raw-etl/every-10-minutes")
        collect = await client.read_deployment_by_name("sensor-collect/modbus-10-minute-windows")
        hourly = await client.read_deployment_by_name("temperature-etl/hourly")
    defaults = {k: v.get("default") for k, v in pool.base_job_template["variables"]["properties"].items()}
    assert defaults["auto_remove"] is True and defaults["image_pull_policy"] == "Never" and defaults["network_mode"] == "host"
    assert not any(s.active for s in raw.schedules + collect.schedules), doctor  # no montrg-device block, no sensors
    assert "paused the schedules of temperature-raw-etl/every-10-minutes" in doctor
    image = hourly.job_variables["image"]
    assert re.fullmatch(r"flet-montrg-e2e:\d+\.\d+\.\d+-[0-9a-f]{7,}(-dirty)?", image), image


async def test_a_run_created_as_the_scheduler_does_completes_in_a_container(deployed, db_pair):
    """The hourly deployment, no parameters and no job variables: the default blocks, the last full
    hour before its scheduled time plus the look-back, the pool's job defaults."""
    from prefect.client.orchestration import get_client

    env, _ = deployed
    source, target = await db_pair("postgresql->postgresql")
    for name, db in (("pg-fdw-v1-iot", source), ("pg-fdw-v2-hq", target)):
        await create_block(name, db.db.url.render_as_string(hide_password=False))
    hour = floor_hour(plant_now())
    await store.insert_raw(source.db, readings(3, hour - timedelta(hours=5), hour, every_seconds=120))
    async with get_client() as client:
        d = await client.read_deployment_by_name("temperature-etl/hourly")
        run = await client.create_flow_run_from_deployment(d.id)
    assert not run.job_variables and not run.parameters.get("hour")
    sh(str(BIN / "prefect"), "worker", "start", "--pool", POOL, "--type", "docker", "--run-once", env=env, timeout=600)
    run = await wait_final(run.id)
    assert run.state.is_completed(), run.state
    assert run.name == f"temperature-etl {hour - timedelta(hours=1):%Y-%m-%d %H:%M}"
    window_start = hour - timedelta(hours=4)
    assert_matches_reference(await target_rows(target), await reference(source, window_start, hour))


async def test_four_fanned_out_backfills_at_once_complete_on_two_workers(deployed, db_pair):
    """4 parents at once (the backfill queue runs 2), 2 chunks each on the chunk queue, 2 workers
    with --limit 3: nothing waits forever, chunks run on both workers, the table is exact."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import (
        ArtifactFilter,
        ArtifactFilterFlowRunId,
        FlowRunFilter,
        FlowRunFilterParentFlowRunId,
        LogFilter,
        LogFilterFlowRunId,
    )

    env, _ = deployed
    source, target = await db_pair("postgresql->postgresql")
    await store.insert_raw(source.db, scenario.rows())
    ranges = [("2024-01-30", "2024-01-31"), ("2024-02-01", "2024-02-02"), ("2024-01-31", "2024-02-01"), ("2024-01-30", "2024-01-31")]
    started = time.monotonic()
    parents = []
    for start, end in ranges:  # as a user starts them: the README's command, no job variables
        out = sh(
            str(BIN / "prefect"), "deployment", "run", "temperature-backfill/backfill",
            *[a for p in (f"start={start}", f"end={end}", f"source_block={source.block}", f"target_block={target.block}",
                          "fan_out=true", "max_parallel=2", "chunk_timeout_minutes=15") for a in ("--param", p)],
            env=env,
        ).stdout
        parents.append(next(line.split("UUID:")[1].strip() for line in out.splitlines() if "UUID:" in line))
    workers = [
        subprocess.Popen(
            [str(BIN / "prefect"), "worker", "start", "--pool", POOL, "--type", "docker", "--limit", "3", "--name", f"e2e-{n}"],
            env=env, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        for n in (1, 2)
    ]
    try:
        finished = [await wait_final(p, timeout=1200) for p in parents]
    finally:
        for w in workers:
            w.terminate()
        for w in workers:
            w.wait(60)

    assert all(p.state.is_completed() for p in finished), [p.state for p in finished]
    ran_on: set[str] = set()
    async with get_client() as client:
        for parent, (start, end) in zip(finished, ranges):
            assert parent.name == f"temperature-backfill {start}..{end}"
            children = await client.read_flow_runs(
                flow_run_filter=FlowRunFilter(parent_flow_run_id=FlowRunFilterParentFlowRunId(any_=[parent.id]))
            )
            assert len(children) == 2 and all(c.state.is_completed() for c in children)
            assert all(c.work_queue_name == CHUNK_QUEUE for c in children)
            first = datetime.fromisoformat(start)
            assert sorted(c.name for c in children) == [
                f"temperature-backfill {first + timedelta(days=d):%Y-%m-%d %H:%M}..{first + timedelta(days=d + 1):%Y-%m-%d %H:%M}"
                for d in (0, 1)
            ]
            logs = await client.read_logs(log_filter=LogFilter(flow_run_id=LogFilterFlowRunId(any_=[c.id for c in children])))
            ran_on |= {m.group(1) for log in logs if (m := re.match(r"Worker '([^']+)' submitting", log.message))}
        artifacts = await client.read_artifacts(artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[p.id for p in finished])))
        parent_keys = {a.key for a in artifacts}
    assert ran_on == {"e2e-1", "e2e-2"}, ran_on
    assert parent_keys == {"temperature-backfill-plan", "temperature-backfill", "temperature-backfill-summary"}, parent_keys
    assert_matches_reference(await target_rows(target), await reference(source, datetime(2024, 1, 30), datetime(2024, 2, 3)))
    print(f"\n4 fanned-out backfills, 8 chunks on 2 workers: {time.monotonic() - started:.0f} s")
