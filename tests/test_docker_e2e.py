"""End to end on a real Docker work pool: build the image with prefect.yaml's build step, deploy
everything with `prefect --no-prompt deploy --all`, run a backfill with `prefect deployment run`
and execute it in containers with `prefect worker start --type docker` - once in one run, and once
fanned out over two workers. Slow (an image build); CI runs it.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path

import pytest

from flows.core.io import sql
from tests import scenario
from tests.helpers import assert_matches_reference, reference, target_rows

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[1]
POOL = "montrg-docker"  # prefect.yaml's pool
BASE = "local/pybase:bookworm"
PREFECT = str(Path(sys.executable).with_name("prefect"))


def sh(*cmd: str, env: dict[str, str], timeout: float = 900) -> subprocess.CompletedProcess:
    done = subprocess.run(cmd, env=env, cwd=ROOT, capture_output=True, text=True, timeout=timeout)
    assert done.returncode == 0, f"{' '.join(cmd)}\n{done.stdout[-4000:]}\n{done.stderr[-4000:]}"
    return done


@pytest.fixture(scope="module")
def deployed(prefect_env):
    """Docker up, the local base image, the pool, and every deployment built and registered."""
    started = time.monotonic()
    sh("bash", "deployments/docker-engine.sh", env=prefect_env, timeout=300)
    sh("bash", "deployments/local-base-image.sh", BASE, env=prefect_env, timeout=600)
    env = {
        **prefect_env,
        "MONTRG_BASE_IMAGE": BASE,
        "MONTRG_DOCKER_BUILD_NETWORK": "host",  # build containers reach the package index like the host
        "MONTRG_IMAGE": "flet-montrg-e2e",
        "MONTRG_IMAGE_TAG": "test",
    }
    env.pop("MONTRG_REGISTRY", None)
    sh(sys.executable, "-m", "deployments.pool", "--pool", POOL, env=env)
    deploy = sh(PREFECT, "--no-prompt", "deploy", "--all", env=env, timeout=1200)
    assert "push skipped" in deploy.stdout
    print(f"\ndocker e2e set-up (engine, base image, build, deploy): {time.monotonic() - started:.0f} s")
    return env


def run_deployment(env, *params: str) -> str:
    out = sh(
        PREFECT, "deployment", "run", "temperature-backfill/backfill",
        *[a for p in params for a in ("--param", p)],
        "--job-variable", "network_mode=host", "--job-variable", "image_pull_policy=Never",
        "--job-variable", "auto_remove=true",
        env=env,
    ).stdout
    return next(line.split("UUID:")[1].strip() for line in out.splitlines() if "UUID:" in line)


async def wait_final(run_id: str, timeout: float = 600):
    from prefect.client.orchestration import get_client

    deadline = time.monotonic() + timeout
    async with get_client() as client:
        while True:
            run = await client.read_flow_run(run_id)
            if run.state and run.state.is_final():
                return run
            assert time.monotonic() < deadline, f"flow run {run_id} still {run.state.name if run.state else '?'}"
            await asyncio.sleep(2)


@pytest.fixture
async def databases(db_pair):
    return await db_pair("postgresql->postgresql")

async def test_backfill_runs_to_completion_in_a_container(deployed, databases):
    source, target = databases
    await sql.insert_raw(source.db, scenario.rows())
    started = time.monotonic()
    run_id = run_deployment(deployed, "start=2024-01-31", "end=2024-02-01", f"source_block={source.block}", f"target_block={target.block}")

    sh(PREFECT, "worker", "start", "--pool", POOL, "--type", "docker", "--run-once", env=deployed, timeout=600)
    run = await wait_final(run_id)

    assert run.state.is_completed(), run.state
    assert_matches_reference(await target_rows(target), await reference(source, scenario.RANGE_START, scenario.RANGE_END))
    print(f"\nbackfill in a container: {time.monotonic() - started:.0f} s")


async def test_fanned_out_backfill_shares_chunks_between_two_workers(deployed, databases):
    source, target = databases
    await sql.insert_raw(source.db, scenario.rows())
    started = time.monotonic()
    run_id = run_deployment(
        deployed, "start=2024-01-30", "end=2024-02-02", f"source_block={source.block}", f"target_block={target.block}",
        "fan_out=true", "max_parallel=3",
    )
    workers = [
        subprocess.Popen([PREFECT, "worker", "start", "--pool", POOL, "--type", "docker", "--limit", "3", "--name", f"e2e-{n}"],
                         env=deployed, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        for n in (1, 2)
    ]
    try:
        parent = await wait_final(run_id, timeout=900)
    finally:
        for w in workers:
            w.terminate()
        for w in workers:
            w.wait(60)

    assert parent.state.is_completed(), parent.state
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterParentFlowRunId

    async with get_client() as client:
        children = await client.read_flow_runs(flow_run_filter=FlowRunFilter(parent_flow_run_id=FlowRunFilterParentFlowRunId(any_=[run_id])))
    assert len(children) == 4 and all(c.state.is_completed() for c in children)  # 4 days, 4 chunks
    days = sorted(c.parameters["start"] for c in children)
    assert days == [datetime(2024, 1, d).isoformat() for d in (30, 31)] + [datetime(2024, 2, d).isoformat() for d in (1, 2)]
    assert_matches_reference(await target_rows(target), await reference(source, datetime(2024, 1, 30), datetime(2024, 2, 3)))
    print(f"\nfanned-out backfill, 4 chunks on 2 workers: {time.monotonic() - started:.0f} s")
