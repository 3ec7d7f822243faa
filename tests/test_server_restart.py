"""A Prefect server SIGKILLed and started again does not leave a deployment blocked.

Seen in the fault soak: the server died one second after a worker moved an hourly run to Pending.
The run never started, kept the deployment's concurrency slot (limit 1) and every later hourly run
waited in AwaitingConcurrencySlot. Two parts mend it, each tested here on a full `prefect server
start` of its own, killed with -9 and started again on the same home and port:
- deployments/automations/stuck-pending-crashed.yaml marks a run Crashed when it stays Pending,
  which gives the slot back, so the deployment's next run goes; when the server died before it
  heard of the Pending, the scheduled flows' look (flows/pipelines/stuck_runs.py) does the same;
- deployments/server.env keeps the concurrency leases on disk, so a run that was Running when the
  server died can still renew its lease (a lost lease makes Prefect end the run) and an expired
  lease is still freed by the server's repossessor.
Slow: two server starts per test.
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
from prefect.client.orchestration import PrefectClient, get_client
from prefect.client.schemas.objects import ConcurrencyLimitStrategy, ConcurrencyOptions
from prefect.settings import PREFECT_API_URL, temporary_settings
from prefect.states import Pending, Running

from flows.ops.automations import AUTOMATIONS_DIR, PENDING_FILE
from flows.pipelines.stuck_runs import PROJECT_TAG, crash_stuck_pending
from tests.helpers import PrefectServer, unique, until

pytestmark = pytest.mark.slow
MONTRG = str(Path(sys.executable).with_name("montrg"))
WITHIN_S = 20  # the shipped file waits 15 minutes


@pytest.fixture
async def server():
    """A server of its own (it is killed), and a Prefect client of it (which retries what a busy
    server answers with 503)."""
    s = PrefectServer()
    try:
        s.start()
        with temporary_settings({PREFECT_API_URL: s.api}):
            async with get_client() as client:
                s.client = client
                yield s
    finally:
        s.stop()


async def test_a_run_left_pending_is_crashed_by_the_automation_and_frees_its_slot(server):
    """Its worker died after taking it: the server saw the Pending event, the automation ends the run."""
    with tempfile.TemporaryDirectory() as folder:  # only the stuck-Pending automation: the others need a notification block
        (Path(folder) / PENDING_FILE).write_text((AUTOMATIONS_DIR / PENDING_FILE).read_text())
        done = subprocess.run([MONTRG, "automations", "apply", "--dir", folder, "--pending-minutes", str(WITHIN_S / 60)],
                              env=server.env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    client = server.client
    deployment = await limited_deployment(client)
    stuck = await client.create_flow_run_from_deployment(deployment)
    assert (await client.set_flow_run_state(stuck.id, Pending())).status.value == "ACCEPT"
    state = await until(lambda: state_if(client, stuck.id, "CRASHED"), WITHIN_S + 120, "the Pending run to be marked Crashed")
    assert "Pending for" in state.message
    answer = await client.set_flow_run_state((await client.create_flow_run_from_deployment(deployment)).id, Pending())
    assert answer.status.value == "ACCEPT", f"the deployment's next run did not get the slot: {answer}"


async def test_a_run_left_pending_by_a_killed_server_is_crashed_by_the_next_scheduled_look(server):
    """The server SIGKILLed as it answered a worker's Pending: its events were lost with it, so no
    automation hears of the run; crash_stuck_pending, which the scheduled flows call, reads the
    runs' states instead. Another project's run and a run Pending for less than the limit are left alone."""
    client = server.client
    deployment = await limited_deployment(client)
    others = await limited_deployment(client, tags=["another-team"])
    stuck = await client.create_flow_run_from_deployment(deployment)
    foreign = await client.create_flow_run_from_deployment(others)
    assert (await client.set_flow_run_state(foreign.id, Pending())).status.value == "ACCEPT"
    assert (await client.set_flow_run_state(stuck.id, Pending())).status.value == "ACCEPT"
    server.kill()
    server.start()
    assert await crash_stuck_pending(minutes=60) == []
    assert await state_if(client, stuck.id, "PENDING") is not None
    ended = await crash_stuck_pending(minutes=0)
    state = await state_if(client, stuck.id, "CRASHED")
    assert state is not None and "without starting" in state.message, state
    assert ended == [stuck.name] and await state_if(client, foreign.id, "PENDING") is not None
    answer = await client.set_flow_run_state((await client.create_flow_run_from_deployment(deployment)).id, Pending())
    assert answer.status.value == "ACCEPT", f"the deployment's next run did not get the slot: {answer}"


async def test_a_running_runs_lease_survives_a_server_restart(server):
    client = server.client
    deployment = await limited_deployment(client)
    run = await client.create_flow_run_from_deployment(deployment)
    assert (await client.set_flow_run_state(run.id, Pending())).status.value == "ACCEPT"
    running = await client.set_flow_run_state(run.id, Running())
    lease = running.state.state_details.deployment_concurrency_lease_id
    assert running.status.value == "ACCEPT" and lease
    server.kill()
    server.start()
    # what the flow engine does every few minutes while the run works; a failed renewal ends the run
    await client.renew_concurrency_lease(lease, lease_duration=300)
    other = await client.create_flow_run_from_deployment(deployment)
    answer = await client.set_flow_run_state(other.id, Pending())
    assert answer.status.value == "REJECT" and answer.state.name == "AwaitingConcurrencySlot"  # the slot is still held


async def limited_deployment(client: PrefectClient, tags: tuple[str, ...] = (PROJECT_TAG,)):
    """A deployment with a concurrency limit of 1 (ENQUEUE), as prefect.yaml gives the hourly job."""
    flow_id = await client.create_flow_from_name(unique("restart-"))
    return await client.create_deployment(flow_id=flow_id, name="limited", tags=list(tags), concurrency_limit=1,
                                          concurrency_options=ConcurrencyOptions(collision_strategy=ConcurrencyLimitStrategy.ENQUEUE))


async def state_if(client: PrefectClient, run_id, kind: str):
    state = (await client.read_flow_run(run_id)).state
    return state if state.type.value == kind else None
