"""End to end as users run it: `prefect deployment run ... --param ...` on a process worker.

The deployments come from prefect.yaml through `deployments.process_deploy` (names `...-bench`,
schedules paused: only the runs started here run), on a process pool made by `montrg pool create
--type process`, served by one `prefect worker start --type process` with Prefect's default
polling (every 10 s: pickup waits for it, as it does for users). Each run is started with the
`prefect deployment run` command and timed on the server's clock from the run's creation to its
Completed state, split into: worker pickup (created -> Pending), process start and imports
(Pending -> Running), the flow's own work (the chunks' seconds from its artifact) and the rest of
the run (blocks, checks, artifacts, final state). Median of 3 for temperature-etl (one hour,
3-hour look-back) and a one-day temperature-backfill, on bench/hourly.py's data.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import statistics
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import hourly  # noqa: E402
from common import start_server  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
POOL = "montrg-bench-process"


async def pause_schedules() -> None:
    from prefect.client.orchestration import get_client

    async with get_client() as client:
        for d in await client.read_deployments():
            if d.name.endswith("-bench"):
                await client.pause_deployment(d.id)


async def breakdown(run_id: str) -> dict[str, float]:
    """Seconds from creation to Completed, and its parts, from the server's states and the run's artifact."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId

    async with get_client() as client:
        while True:
            run = await client.read_flow_run(run_id)
            if run.state and run.state.is_final():
                break
            await asyncio.sleep(0.5)  # polling the server for the run's end, not ordering events
        if not run.state.is_completed():
            raise RuntimeError(f"run {run_id} ended {run.state.name}: {run.state.message}")
        states = {s.type.value: s.timestamp for s in await client.read_flow_run_states(run_id)}
        artifacts = await client.read_artifacts(artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[run.id])))
    work = 0.0
    for artifact in artifacts:
        data = json.loads(artifact.data) if isinstance(artifact.data, str) and artifact.type == "table" else artifact.data
        rows = data if isinstance(data, list) else []
        work += sum(float(r.get("seconds", 0)) for r in rows if isinstance(r, dict) and r.get("window") != "total")
    created, pending, running, done = run.created, states["PENDING"], states["RUNNING"], states["COMPLETED"]
    return {
        "total": (done - created).total_seconds(),
        "pickup": (pending - created).total_seconds(),
        "start": (running - pending).total_seconds(),
        "work": work,
        "rest": (done - running).total_seconds() - work,
    }


def deployment_run(name: str, params: dict[str, str], env: dict[str, str]) -> str:
    args = [str(BIN / "prefect"), "deployment", "run", name]
    for key, value in params.items():
        args += ["--param", f"{key}={value}"]
    done = subprocess.run(args, env=env, capture_output=True, text=True, cwd=ROOT, check=True)
    return re.search(r"UUID:\s*([0-9a-f-]{36})", done.stdout).group(1)


def main() -> None:
    env = {**os.environ, "PREFECT_SERVER_ANALYTICS_ENABLED": "false", "PREFECT_LOGGING_LEVEL": "WARNING"}
    server = start_server(env)
    os.environ.update(env)
    worker = None
    try:
        asyncio.run(hourly.ensure_data())
        subprocess.run([str(BIN / "montrg"), "pool", "create", "--pool", POOL, "--type", "process"], env=env, check=True,
                       capture_output=True, cwd=ROOT)
        subprocess.run([sys.executable, "-m", "deployments.process_deploy", "--pool", POOL, "--suffix", "bench"], env=env,
                       check=True, capture_output=True, cwd=ROOT)
        asyncio.run(pause_schedules())
        worker = subprocess.Popen([str(BIN / "prefect"), "worker", "start", "--pool", POOL, "--type", "process", "--limit", "1"],
                                  env=env, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        blocks = {"source_block": hourly.block(hourly.source_db("10M")), "target_block": hourly.block(hourly.TARGET)}
        hour = hourly.START + timedelta(days=3, hours=14)
        day = hourly.START + timedelta(days=2)
        jobs = [
            ("temperature-etl/hourly-bench, one hour + 3 h look-back", "temperature-etl/hourly-bench",
             {"hour": hour.isoformat(), **blocks}),
            ("temperature-backfill/backfill-bench, one day", "temperature-backfill/backfill-bench",
             {"start": day.date().isoformat(), "end": day.date().isoformat(), **blocks}),
        ]
        print(f"end to end on a process worker, median of {hourly.REPEATS} (seconds on the server's clock)")
        print(f"{'run':<58}{'total':>7}{'pickup':>8}{'start+imports':>15}{'work':>7}{'rest':>7}")
        for label, name, params in jobs:
            parts = []
            for _ in range(hourly.REPEATS):
                asyncio.run(hourly.clear_target())  # a first load each time
                parts.append(asyncio.run(breakdown(deployment_run(name, params, env))))
            med = {k: statistics.median(p[k] for p in parts) for k in parts[0]}
            print(f"{label:<58}{med['total']:>7.2f}{med['pickup']:>8.2f}{med['start']:>15.2f}{med['work']:>7.2f}{med['rest']:>7.2f}")
        print("pickup: created -> Pending (the worker polls every 10 s); start+imports: Pending -> Running (a new process,")
        print("Prefect and the flow imported, the flow loaded); work: the chunks' own seconds; rest: blocks, checks, artifacts, states")
    finally:
        if worker is not None:
            worker.terminate()
            worker.wait(30)
        if server is not None:
            server.terminate()
            server.wait(30)


if __name__ == "__main__":
    main()
