"""Soak: the whole pipeline deployed on a Docker pool and left alone, every schedule compressed
to every minute (`make soak MINUTES=30`; not part of `make test`).

    .venv/bin/python -m deployments.soak --minutes 30

What it sets up, as docs/deployment.md's steps do: a Prefect server of its own (scheduler on),
fresh PostgreSQL databases for IoT, HQ and the gateways' device table, the default blocks, the
schema, a simulated Modbus floor on loopback (30 devices, one that hangs) in the sensors table,
two days of history, the Docker engine and the local base image, `montrg pool create
--no-registry`, `prefect deploy --all` from prefect.yaml with every cron rewritten to `* * * * *`
(sensor_collect windows of 60 s), `montrg doctor --pause-unready`, and two Docker workers with
`--limit 3`. A feeder writes gateway rows (a few malformed) every 20 s. Halfway through, three
fanned-out backfills of the history start at once.

At the end: the schedules are paused, the runs in flight finish, and it prints the runs by
deployment and state, how late the scheduled runs started, and the HQ `temperature` table
against a GROUP BY computed by PostgreSQL over the raw rows (every hour before the end). Exit 1
when a run failed or crashed, a backfill did not complete, or a table differs.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
PG = "postgresql://postgres@127.0.0.1:5432"
BASE = "local/pybase:bookworm"
POOL = "montrg-docker"


def sh(*cmd: str, env: dict[str, str], timeout: float = 1200) -> str:
    done = subprocess.run(cmd, env=env, cwd=ROOT, capture_output=True, text=True, timeout=timeout)
    if done.returncode:
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
    return done.stdout


def compressed(config: dict) -> dict:
    """prefect.yaml with every schedule every minute and sensor_collect windows of a minute."""
    out = dict(config)
    out["deployments"] = []
    for d in config["deployments"]:
        d = {**d, "parameters": dict(d.get("parameters", {}))}
        if d.get("schedules"):
            d["schedules"] = [{**s, "cron": "* * * * *"} for s in d["schedules"]]
        if d["entrypoint"].endswith(":sensor_collect"):
            d["parameters"].update(duration_seconds=60, interval_seconds=10)
        out["deployments"].append(d)
    return out


async def admin(statement: str) -> None:
    import asyncpg

    conn = await asyncpg.connect(f"{PG}/postgres")
    try:
        await conn.execute(statement)
    finally:
        await conn.close()


async def set_up_databases(names: dict[str, str], env: dict[str, str]) -> tuple:
    """Databases, blocks, schema, master data with the floor's sensors, history, the device table."""
    from sqlalchemy import MetaData, text

    from blocks import create_block, open_database
    from flows.ops import seed
    from flows.settings import plant_now
    from flows.store.schema import device_table, init_schema

    for name in names.values():
        await admin(f'CREATE DATABASE "{name}"')
    for block, role in (("pg-fdw-v1-iot", "iot"), ("pg-fdw-v2-hq", "hq"), ("montrg-device", "gw")):
        await create_block(block, f"{PG}/{names[role]}")
    cfg = seed.FloorSettings()
    logging.getLogger("pymodbus").setLevel(logging.CRITICAL)  # the floor's server: a poller that hung up is not news
    now = plant_now()
    floor, silent = await seed.start_floor(cfg, now)
    today = now.replace(hour=0, minute=0, second=0, microsecond=0)
    async with open_database("pg-fdw-v1-iot") as iot, open_database("pg-fdw-v2-hq") as hq, open_database("montrg-device") as gw:
        for db in (iot, hq):
            async with db.engine.begin() as conn:
                await conn.run_sync(init_schema, db.schema)
        gateway = device_table("dbo.temperature", MetaData())
        async with gw.engine.begin() as conn:
            await conn.execute(text("CREATE SCHEMA dbo"))
            await conn.run_sync(gateway.metadata.create_all)
        await seed.seed_master(iot, cfg, floor.port, silent.port)
        await seed.seed_history(iot, cfg, today - timedelta(days=2), today)
    return cfg, floor, silent, today


async def feed_gateway(stop: asyncio.Event, cfg) -> int:
    """Gateway rows every 20 s: one per answering location, every 50th value malformed."""
    from sqlalchemy import MetaData, insert

    from blocks import open_database
    from flows.ops import simulate
    from flows.settings import plant_now
    from flows.store.schema import device_table

    gateway = device_table("dbo.temperature", MetaData())
    written = 0
    async with open_database("montrg-device") as gw:
        while not stop.is_set():
            now = plant_now().replace(microsecond=0)
            raw = simulate.readings(cfg.locations, now, now + timedelta(seconds=1), every_seconds=1, prefix=demo_prefix(), seed=written)
            rows = [
                {"sensor_id": r["loc_id"].replace(demo_prefix(), "DEMO-S"), "device_id": "GW-01", "capture_dt": r["capture_dt"],
                 "t1": "ERR" if (written + i) % 50 == 0 else text(r["temperature"]), "t2": text(r["humidity"]), "t3": text(r["pcv_temperature"]),
                 "t4": None, "t5": None, "t6": None, "upload_yn": "Y", "upload_dt": plant_now()}
                for i, r in enumerate(raw.iter_rows(named=True))
            ]
            async with gw.engine.begin() as conn:
                await conn.execute(insert(gateway), rows)
            written += len(rows)
            try:
                await asyncio.wait_for(stop.wait(), 20)
            except TimeoutError:
                pass
    return written


def text(value: float | None) -> str | None:
    return None if value is None else str(value)


def demo_prefix() -> str:
    from flows.ops.seed import PREFIX

    return PREFIX


async def start_backfills(env: dict[str, str], today: datetime) -> list[str]:
    day1, day2 = today - timedelta(days=2), today - timedelta(days=1)
    ranges = [(day1, day1), (day2, day2), (day1, day2)]
    ids = []
    for start, end in ranges:
        out = sh(
            str(BIN / "prefect"), "deployment", "run", "temperature-backfill/backfill", "--param", f"start={start:%Y-%m-%d}",
            "--param", f"end={end:%Y-%m-%d}", "--param", "fan_out=true", "--param", "chunk_hours=12", "--param", "max_parallel=2",
            env=env,
        )
        ids.append(next(line.split("UUID:")[1].strip() for line in out.splitlines() if "UUID:" in line))
    return ids


async def wait_idle(timeout: float) -> None:
    """Until no run is scheduled to start now, pending or running (or `timeout`)."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import (
        FlowRunFilter,
        FlowRunFilterNextScheduledStartTime,
        FlowRunFilterState,
        FlowRunFilterStateType,
    )
    from prefect.client.schemas.objects import StateType

    deadline = time.monotonic() + timeout
    async with get_client() as client:
        while time.monotonic() < deadline:
            busy = await client.read_flow_runs(flow_run_filter=FlowRunFilter(state=FlowRunFilterState(
                type=FlowRunFilterStateType(any_=[StateType.PENDING, StateType.RUNNING, StateType.CANCELLING]))))
            due = await client.read_flow_runs(flow_run_filter=FlowRunFilter(
                state=FlowRunFilterState(type=FlowRunFilterStateType(any_=[StateType.SCHEDULED])),
                next_scheduled_start_time=FlowRunFilterNextScheduledStartTime(before_=datetime.now(UTC))))
            if not busy and not due:
                return
            await asyncio.sleep(5)


async def report(backfills: list[str], end: datetime) -> bool:
    from prefect.client.orchestration import get_client
    from sqlalchemy import text

    from blocks import open_database

    ok = True
    async with get_client() as client:
        runs = await client.read_flow_runs(limit=200, offset=0)
        offset = len(runs)
        while True:
            more = await client.read_flow_runs(limit=200, offset=offset)
            if not more:
                break
            runs += more
            offset += len(more)
        deployments = {d.id: d.name for d in await client.read_deployments()}
        flows = {f.id: f.name for f in await client.read_flows()}
    by_state = Counter((f"{flows.get(r.flow_id, '?')}/{deployments.get(r.deployment_id, '-')}", r.state.name if r.state else "?") for r in runs)
    print("\nruns by deployment and state:")
    for (name, state), count in sorted(by_state.items()):
        print(f"  {name:<50} {state:<12} {count:>4}")
    bad = [r for r in runs if r.state and r.state.type.value in ("FAILED", "CRASHED")]
    for r in bad[:20]:
        print(f"  ! {r.name}: {r.state.name}: {(r.state.message or '')[:300]}")
    ok &= not bad
    scheduled = [r for r in runs if r.auto_scheduled and r.start_time and r.expected_start_time]
    lateness = sorted((r.start_time - r.expected_start_time).total_seconds() for r in scheduled)
    if lateness:
        print(
            f"\nlate starts of {len(lateness)} scheduled runs (start - scheduled time): median {statistics.median(lateness):.1f} s, "
            f"p90 {lateness[int(0.9 * (len(lateness) - 1))]:.1f} s, max {lateness[-1]:.1f} s; over 60 s: {sum(x > 60 for x in lateness)}"
        )
    never = [r for r in runs if r.auto_scheduled and r.state and r.state.name == "Late"]
    print(f"scheduled runs never started (Late): {len(never)}")
    states = {r.id: r.state.name for r in runs}
    print("fanned-out backfills, then the last hour by hand: " + ", ".join(states.get(uuid.UUID(b), "?") for b in backfills))
    ok &= all(states.get(uuid.UUID(b)) == "Completed" for b in backfills)

    hour = end.replace(minute=0, second=0, microsecond=0) + timedelta(hours=1)  # every hour, the last one too
    async with open_database("pg-fdw-v1-iot") as iot, open_database("pg-fdw-v2-hq") as hq:
        async with iot.engine.connect() as conn:
            expected = {tuple(r[:3]): r[3:] for r in (await conn.execute(text(
                "SELECT loc_id, to_char(capture_dt, 'YYYYMMDD'), to_char(capture_dt, 'HH24'), COUNT(*), "
                "MAX(temperature), MIN(temperature), ROUND(AVG(temperature)::numeric, 4), MAX(humidity), MIN(humidity) "
                "FROM flet_montrg.temperature_raw WHERE capture_dt < :hour GROUP BY 1, 2, 3"), {"hour": hour})).all()}
            raw_rows = (await conn.execute(text("SELECT COUNT(*) FROM flet_montrg.temperature_raw"))).scalar()
            rejects = (await conn.execute(text("SELECT COUNT(*) FROM flet_montrg.temperature_raw_reject"))).scalar()
        async with hq.engine.connect() as conn:
            got = {tuple(r[:3]): r[3:] for r in (await conn.execute(text(
                "SELECT loc_id, ymd, hh, sample_count, temperature_max, temperature_min, ROUND(temperature_avg::numeric, 4), "
                "humidity_max, humidity_min FROM flet_montrg.temperature WHERE ymd || hh < :key"), {"key": f"{hour:%Y%m%d%H}"})).all()}
            hq_locations = (await conn.execute(text("SELECT COUNT(*) FROM flet_montrg.locations"))).scalar()
    missing, extra = expected.keys() - got.keys(), got.keys() - expected.keys()
    differ = [k for k in expected.keys() & got.keys() if not same(expected[k], got[k])]
    print(
        f"\nHQ temperature vs PostgreSQL GROUP BY of {raw_rows:,} raw rows (hours before {hour:%Y-%m-%d %H:%M}): "
        f"{len(expected)} location-hours expected, {len(got)} in HQ; missing {len(missing)}, extra {len(extra)}, differing {len(differ)}"
    )
    for k in sorted(missing | extra)[:5] + differ[:5]:
        print(f"  ! {k}: expected {expected.get(k)}, HQ {got.get(k)}")
    print(f"raw rows rejected with their reasons: {rejects:,}; master data in HQ: {hq_locations} locations")
    ok &= not (missing or extra or differ) and hq_locations > 0
    return ok


def same(expected: tuple, got: tuple) -> bool:
    """Counts, maxima and minima exact; the average within its 4-decimal rounding."""
    for n, (e, g) in enumerate(zip(expected, got)):
        if (e is None) != (g is None):
            return False
        if e is not None and (abs(float(e) - float(g)) > 1.01e-4 if n == 3 else float(e) != float(g)):
            return False
    return True


async def soak(minutes: float, home: Path, port: int) -> int:
    from flows.settings import plant_now

    env = {**os.environ, "MONTRG_BASE_IMAGE": BASE, "MONTRG_DOCKER_BUILD_NETWORK": "host"}
    tag = uuid.uuid4().hex[:8]
    names = {role: f"montrg_soak_{role}_{tag}" for role in ("iot", "hq", "gw")}
    procs: list[subprocess.Popen] = []
    log = open(home / "processes.log", "w")  # noqa: SIM115 - open for the whole soak
    started = time.monotonic()
    try:
        procs.append(subprocess.Popen([str(BIN / "prefect"), "server", "start", "--host", "127.0.0.1", "--port", str(port)],
                                      env=env, stdout=log, stderr=log))
        sh("bash", "deployments/docker-engine.sh", env=env, timeout=300)
        sh("bash", "deployments/local-base-image.sh", BASE, env=env, timeout=900)
        for _ in range(120):
            if subprocess.run(["curl", "-sf", f"http://127.0.0.1:{port}/api/health"], capture_output=True).returncode == 0:
                break
            await asyncio.sleep(1)
        cfg, floor, silent, today = await set_up_databases(names, env)
        print(sh(str(BIN / "montrg"), "pool", "create", "--pool", POOL, "--no-registry", env=env))
        with tempfile.NamedTemporaryFile("w", prefix=".montrg-deploy-", suffix=".yaml", dir=ROOT, delete=False) as spec:
            yaml.safe_dump(compressed(yaml.safe_load((ROOT / "prefect.yaml").read_text())), spec, sort_keys=False)
        try:
            sh(str(BIN / "prefect"), "--no-prompt", "deploy", "--all", "--prefect-file", spec.name, env=env)
        finally:
            Path(spec.name).unlink(missing_ok=True)
        print(sh(str(BIN / "montrg"), "doctor", "--pool", POOL, "--pause-unready", env=env))
        for n in (1, 2):
            procs.append(subprocess.Popen([str(BIN / "prefect"), "worker", "start", "--pool", POOL, "--type", "docker",
                                           "--limit", "3", "--name", f"soak-{n}"], env=env, stdout=log, stderr=log))
        print(f"set up in {time.monotonic() - started:.0f} s; soaking {minutes:g} minutes (Prefect UI: http://127.0.0.1:{port})", flush=True)
        stop = asyncio.Event()
        feeder = asyncio.create_task(feed_gateway(stop, cfg))
        await asyncio.sleep(minutes * 30)
        backfills = await start_backfills(env, today)
        print(f"{minutes / 2:g} min: started 3 fanned-out backfills at once", flush=True)
        await asyncio.sleep(minutes * 30)
        stop.set()
        fed = await feeder
        end = plant_now()
        await asyncio.sleep(150)  # two more minutes of every schedule: the last gateway rows are loaded, then aggregated
        sh(str(BIN / "prefect"), "--no-prompt", "deployment", "schedule", "pause", "--all", env=env)
        await wait_idle(600)
        # the hour under way is not a "last full hour" yet: aggregate it once more, as a user would
        current = end.replace(minute=0, second=0, microsecond=0)
        out = sh(str(BIN / "prefect"), "deployment", "run", "temperature-etl/hourly", "--param",
                 f"hour={current:%Y-%m-%dT%H:%M}", env=env)
        final = next(line.split("UUID:")[1].strip() for line in out.splitlines() if "UUID:" in line)
        await wait_idle(600)
        backfills.append(final)
        print(f"\nsoak of {minutes:g} minutes done; the feeder wrote {fed:,} gateway rows")
        await floor.stop()
        await silent.stop()
        return 0 if await report(backfills, end) else 1
    finally:
        for p in procs[::-1]:
            p.send_signal(signal.SIGTERM)
        for p in procs[::-1]:
            try:
                p.wait(60)
            except subprocess.TimeoutExpired:
                p.kill()
        for name in names.values():
            await admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        log.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=30)
    args = parser.parse_args()
    if not 2 <= args.minutes <= 24 * 60:
        raise SystemExit(f"--minutes={args.minutes} must be 2..1440")
    # the soak's own Prefect server, in the environment before anything imports Prefect
    home = Path(tempfile.mkdtemp(prefix="montrg-soak-"))
    port = 4400 + os.getpid() % 500
    os.environ.update(PREFECT_HOME=str(home), PREFECT_API_URL=f"http://127.0.0.1:{port}/api", PREFECT_SERVER_ANALYTICS_ENABLED="false")
    raise SystemExit(asyncio.run(soak(args.minutes, home, port)))


if __name__ == "__main__":
    main()
