"""A flow process killed with -9 does not stay "Running" forever: the shipped automation
(deployments/automations/crashed-on-silence.yaml) marks it Crashed once its heartbeats stop. On a
full `prefect server start` of its own: proactive triggers do not run in the test harness's server.
Slow (a server start, then a minute of silence)."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import pytest
import yaml

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[1]
PREFECT = str(Path(sys.executable).with_name("prefect"))
HEARTBEAT = 30  # Prefect's minimum
WITHIN = 45  # the shipped file waits 600 s for Prefect's default 180 s heartbeat


@pytest.fixture(scope="module")
def full_server():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    home = tempfile.mkdtemp(prefix="montrg-full-server-")
    env = {**os.environ, "PREFECT_HOME": home, "PREFECT_API_URL": f"http://127.0.0.1:{port}/api",
           "PREFECT_FLOWS_HEARTBEAT_FREQUENCY": str(HEARTBEAT)}
    server = subprocess.Popen([PREFECT, "server", "start", "--host", "127.0.0.1", "--port", str(port)], env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/api/health", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline and server.poll() is None, "prefect server did not start"
            time.sleep(0.5)
        yield env
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(60)


async def test_a_killed_flow_process_is_marked_crashed(full_server):
    env = full_server
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
            run = await _until(lambda: _running_sleeper(client), 120, "the sleeper's run to be Running")
            await _until(lambda: _heartbeat_seen(client, run["id"]), 120, "its first heartbeat")
        finally:
            sleeper.send_signal(signal.SIGKILL)
            sleeper.wait(30)
        killed = time.monotonic()
        state = await _until(lambda: _crashed(client, run["id"]), WITHIN + 90, "the run to be marked Crashed")
    assert state["type"] == "CRASHED" and "No heartbeat" in state["message"]
    print(f"\nkilled -9, marked Crashed after {time.monotonic() - killed:.0f} s (heartbeat {HEARTBEAT} s, within {WITHIN} s)")


async def _until(check, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = await check()
        if found:
            return found
        await asyncio.sleep(1)  # polling the server for a condition, not ordering events
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")


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
