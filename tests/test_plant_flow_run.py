"""A flow called in a fresh process sends its parameters without importing FastAPI, and the server
holds them as given (PlantFlow, flows/pipelines/params.py)."""

from __future__ import annotations

import json
import subprocess
import sys

CODE = """
import asyncio, json, sys
from prefect.client.orchestration import get_client
from prefect.runtime import flow_run
from flows.pipelines.params import checked, flow

@flow(name="plant-params", validate_parameters=False)
@checked
async def plant_params(n: int = 1, limits: dict[str, list[float]] | None = None, note: str | None = None) -> str:
    return flow_run.id

async def main():
    run_id = await plant_params(n=2, limits={"temperature": [-40.0, 125.5]})
    fastapi = "fastapi" in sys.modules
    async with get_client() as client:
        run = await client.read_flow_run(run_id)
    print(json.dumps({"fastapi": fastapi, "parameters": run.parameters}))

asyncio.run(main())
"""


def test_a_flow_run_in_a_fresh_process_sends_its_parameters_without_fastapi(prefect_env):
    out = subprocess.run([sys.executable, "-c", CODE], capture_output=True, text=True, timeout=180, env=prefect_env)
    assert out.returncode == 0, out.stderr[-3000:]
    got = json.loads(out.stdout.strip().splitlines()[-1])
    assert got["parameters"] == {"n": 2, "limits": {"temperature": [-40.0, 125.5]}, "note": None}
    assert got["fastapi"] is False
