"""A flow process killed with -9 does not stay "Running" forever: the shipped automation
(deployments/automations/crashed-on-silence.yaml) marks it Crashed once its heartbeats stop. On a
full `prefect server start` of its own: proactive triggers do not run in the test harness's server.
Slow (a server start, then a minute of silence)."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
import yaml

from tests.helpers import until

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[1]
PREFECT = str(Path(sys.executable).with_name("prefect"))
HEARTBEAT = 30  # Prefect's minimum
WITHIN = 45  # the shipped file waits 600 s for Prefect's default 180 s heartbeat


async def test_a_killed_flow_process_is_marked_crashed(full_prefect_server):
    env = {**full_prefect_server, "PREFECT_FLOWS_HEARTBEAT_FREQUENCY": str(HEARTBEAT)}
    spec = yaml.safe_load((ROOT / "deployments" / "automations" / "crashed-on-silence.yaml").read_text())
    spec["trigger"]["within"] = WITHIN
    done = subprocess.run([PREFECT, "automation", "create", "--from-json", __import__("json").dumps(spec)],
                          env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr
    sleeper = subprocess.Popen([sys.executable, str(ROOT / "tests" / "sleeper.py")], env=env, cwd=ROOT,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    api = env["PREFECT_API_URL"]
    async with httpx.AsyncClient(base_url=api, timeout=10) as client:
        try:
            run = await until(lambda: _running_sleeper(client), 120, "the sleeper's run to be Running")
            await until(lambda: _heartbeat_seen(client, run["id"]), 120, "its first heartbeat")
        finally:
            sleeper.send_signal(signal.SIGKILL)
            sleeper.wait(30)
        killed = time.monotonic()
        state = await until(lambda: _crashed(client, run["id"]), WITHIN + 90, "the run to be marked Crashed")
    assert state["type"] == "CRASHED" and "No heartbeat" in state["message"]
    print(f"\nkilled -9, marked Crashed after {time.monotonic() - killed:.0f} s (heartbeat {HEARTBEAT} s, within {WITHIN} s)")


async def _running_sleeper(client: httpx.AsyncClient):
    runs = (await client.post("/flow_runs/filter", json={"flow_runs": {"state": {"type": {"any_": ["RUNNING"]}}}})).json()
    return next(iter(runs), None)


async def _heartbeat_seen(client: httpx.AsyncClient, run_id: str) -> bool:
    page = (await client.post("/events/filter", json={"filter": {
        "event": {"name": ["prefect.flow-run.heartbeat"]}, "resource": {"id": [f"prefect.flow-run.{run_id}"]},
        "occurred": {"since": "2000-01-01T00:00:00Z"}}})).json()
    return bool(page.get("events"))


async def _crashed(client: httpx.AsyncClient, run_id: str):
    state = (await client.get(f"/flow_runs/{run_id}")).json()["state"]
    return state if state["type"] == "CRASHED" else None
