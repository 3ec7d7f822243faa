"""Deployed and left alone: run names, Prefect's local defaults, the pool's job defaults, the
doctor and the chunk queue (the Docker end to end is in test_docker_e2e)."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import UTC, date, datetime
from pathlib import Path

import pytest

from deployments.pool import docker_defaults, ensure_pool
from deployments.process_deploy import without_image
from flows.pipelines import run_names
from flows.settings import CHUNK_QUEUE
from tests.helpers import unique

ROOT = Path(__file__).resolve().parents[1]
MONTRG = str(Path(sys.executable).with_name("montrg"))
BIN = Path(sys.executable).parent
SCHEDULED = datetime(2024, 3, 1, 6, 0, tzinfo=UTC)  # 15:00 in Seoul


@pytest.mark.parametrize(
    ("namer", "parameters", "expected"),
    [
        (run_names.etl_name, {}, "temperature-etl 2024-03-01 14:00"),  # the last full hour before the schedule
        (run_names.etl_name, {"hour": "2024-03-01T15:20"}, "temperature-etl 2024-03-01 15:00"),
        (run_names.etl_name, {"hour": datetime(2024, 3, 1, 0, 0, tzinfo=UTC)}, "temperature-etl 2024-03-01 09:00"),
        (run_names.backfill_name, {"start": "2024-01-01", "end": date(2024, 1, 31)}, "temperature-backfill 2024-01-01..2024-01-31"),
        (run_names.backfill_name, {"start": "2024-01-30T00:00:00", "end": "2024-01-31T00:00:00"},
         "temperature-backfill 2024-01-30 00:00..2024-01-31 00:00"),
        (run_names.backfill_name, {"start": 20240131, "end": [1]}, "temperature-backfill 20240131..[1]"),  # shown as given
        (run_names.raw_etl_name, {"device_block": "gw", "device_table": "dbo.t"}, "raw-etl gw/dbo.t"),
        (run_names.raw_backfill_name, {"start": "2024-01-01", "end": "2024-01-02"}, "raw-backfill dbo.temperature 2024-01-01..2024-01-02"),
        (run_names.master_name, {"dry_run": True}, "master-etl pg-fdw-v1-iot->pg-fdw-v2-hq dry-run"),
        (run_names.collect_name, {"duration_seconds": 60}, "sensor-collect 2024-03-01 15:00 +60s"),
    ],
)
def test_run_names_say_what_runs(namer, parameters, expected):
    assert namer(parameters, SCHEDULED) == expected


def test_montrg_sets_prefect_defaults_before_prefect_is_imported():
    env = {k: v for k, v in os.environ.items() if k not in ("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "PREFECT_SERVER_ANALYTICS_ENABLED")}
    probe = (
        "import contextlib, io, flows.ops.cli\n"  # what the montrg console script runs, up to its first command
        "with contextlib.suppress(SystemExit), contextlib.redirect_stdout(io.StringIO()):\n"
        "    flows.ops.cli.main(['--help'])\n"
        "from prefect.settings import get_current_settings\n"
        "s = get_current_settings().server\n"
        "print(s.ephemeral.startup_timeout_seconds, s.analytics_enabled)"
    )
    out = subprocess.run([sys.executable, "-c", probe], env=env, capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["120", "False"]


def test_docker_job_defaults_remove_containers_and_never_pull_without_a_registry():
    assert docker_defaults(no_registry=False) == {"auto_remove": True, "image_pull_policy": "IfNotPresent"}
    assert docker_defaults(no_registry=True) == {"auto_remove": True, "image_pull_policy": "Never", "network_mode": "host"}


def test_process_deployments_never_take_the_docker_deployments_names():
    import yaml

    config = yaml.safe_load((ROOT / "prefect.yaml").read_text())
    rewritten = without_image(config, "montrg-process", "/srv/flet-montrg")
    docker_names = {d["name"] for d in config["deployments"]}
    assert {d["name"] for d in rewritten["deployments"]} == {f"{n}-process" for n in docker_names}
    assert not {d["name"] for d in rewritten["deployments"]} & docker_names


async def test_pool_gets_job_defaults_and_a_chunk_queue_also_when_it_exists(prefect_server):
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.actions import WorkPoolCreate
    from prefect_docker.worker import DockerWorker

    pool = unique("montrg-pool-")
    async with get_client() as client:  # a pool made before this version: the worker type's bare template
        await client.create_work_pool(WorkPoolCreate(name=pool, type="docker", base_job_template=DockerWorker.get_default_base_job_template()))
    await ensure_pool(pool, backfill_slots=2, chunk_slots=5, no_registry=True)
    await ensure_pool(pool, backfill_slots=2, chunk_slots=5, no_registry=True)  # idempotent
    async with get_client() as client:
        work_pool = await client.read_work_pool(pool)
        queues = {q.name: q for q in await client.read_work_queues(work_pool_name=pool)}
    defaults = {k: v.get("default") for k, v in work_pool.base_job_template["variables"]["properties"].items()}
    assert (defaults["auto_remove"], defaults["image_pull_policy"], defaults["network_mode"]) == (True, "Never", "host")
    assert sorted(queues) == sorted(["hourly", "default", CHUNK_QUEUE, "backfill"])
    assert queues[CHUNK_QUEUE].concurrency_limit == 5 and queues["backfill"].concurrency_limit == 2
    assert queues[CHUNK_QUEUE].priority < queues["backfill"].priority  # chunks are served before new parents


def test_doctor_with_the_api_down_says_so_in_one_line():
    env = {**os.environ, "PREFECT_API_URL": "http://127.0.0.1:9/api"}
    out = subprocess.run([MONTRG, "doctor"], env=env, capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert out.returncode == 1
    assert "MISSING Prefect API: http://127.0.0.1:9/api" in out.stdout and "Traceback" not in out.stderr + out.stdout


async def test_doctor_names_what_each_deployment_lacks_and_pauses_it(prefect_env, db_pair):
    """A deployment whose blocks exist but whose device block and sensors do not: named, with
    the command that fixes each, and paused by --pause-unready; resumed once ready."""
    from prefect.client.orchestration import get_client

    from flows import temperature_raw_etl

    source, _ = await db_pair("sqlite->sqlite")
    device = unique("gw-")
    deployment = await temperature_raw_etl.ato_deployment(
        name=unique("doctor-"), cron="*/10 * * * *", parameters={"iot_block": source.block, "device_block": device},
    )
    deployment_id = await deployment.aapply()
    out = subprocess.run([MONTRG, "doctor", "--pause-unready"], env=prefect_env, capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert f"MISSING block {device}: does not exist" in out.stdout
    assert f"fix: montrg blocks create {device} " in out.stdout
    async with get_client() as client:
        d = await client.read_deployment(deployment_id)
        assert d.schedules and not any(s.active for s in d.schedules), out.stdout
        await client.delete_deployment(deployment_id)


def test_doctor_without_an_api_says_which_setting_to_make_instead_of_checking_a_temporary_server(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "PREFECT_API_URL"}
    env["PREFECT_HOME"] = str(tmp_path)  # a fresh profile: no API set anywhere
    out = subprocess.run([MONTRG, "doctor"], env=env, capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert out.returncode == 1, out.stdout + out.stderr
    assert "MISSING Prefect API: none configured (profile 'ephemeral' sets no PREFECT_API_URL" in out.stdout
    assert "export PREFECT_API_URL=" in out.stdout and "--ephemeral" in out.stdout
    assert "127.0.0.1:" not in out.stdout  # no temporary server was started and checked


def test_deploy_without_a_docker_engine_stops_in_one_line_with_the_fixes(prefect_env):
    env = {**prefect_env, "DOCKER_HOST": "unix:///nonexistent/docker.sock"}
    made = subprocess.run([MONTRG, "pool", "create", "--no-registry"], env=env, capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert made.returncode == 0, made.stderr  # the pool prefect.yaml names (creating it needs no engine)
    out = subprocess.run([str(BIN / "prefect"), "--no-prompt", "deploy", "-n", "hourly"], env=env, capture_output=True,
                         text=True, timeout=300, cwd=ROOT)
    assert out.returncode == 1
    assert "Traceback" not in out.stdout + out.stderr
    errors = [line for line in (out.stdout + out.stderr).splitlines() if "error" in line.lower()]
    assert errors == ["montrg: error: the Docker engine does not answer at unix:///nonexistent/docker.sock (DockerException): "
                      "start it (systemctl start docker, or: dockerd &) before prefect deploy; or run the flows without Docker "
                      "on a process pool: python -m deployments.process_deploy (docs/deployment.md)"]
