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

With `--faults` (`make soak MINUTES=30 FAULTS=1`) the IoT and HQ databases live in a PostgreSQL
cluster of the soak's own and the pipeline reaches the gateways' database through a port that can
be closed; while the schedules run, faults are injected one at a time, each healed after its stated
duration (deployments/faults.py): the database server restarted, the Prefect server SIGKILLed and
restarted, a worker SIGKILLed while a run executes on it, every backend of the pipeline terminated
during fanned-out backfills, the gateways' database unreachable for 10 minutes, an ACCESS EXCLUSIVE
lock on the HQ table for 3 minutes (the short form, under 25 minutes, injects the first three).
Then the schedules run `--tail` more minutes and the report adds, with no run started by hand:
every ended hour against the GROUP BY, every gateway row loaded or rejected exactly once, no run
left Running, Pending or Late, the runs that failed during a fault with the run that covered their
window, the alerts against the data, the failed-run notifications received, and the time from each
heal to the first Completed run of each deployment it hit. Exit 1 when any of it does not hold.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import yaml

from deployments.faults import Fault, Gate, PrivateCluster, Service, Webhook, run_plan
from deployments.server import server_settings

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
SHARED_PG = "postgresql://postgres@127.0.0.1:5432"  # the machine's service: databases created and dropped, never stopped
BASE = "local/pybase:bookworm"
POOL = "montrg-docker"
SCHEDULED = ("master-etl/daily", "sensor-collect/modbus-10-minute-windows", "temperature-etl/hourly",
             "temperature-raw-etl/every-10-minutes")
BACKFILL = "temperature-backfill/backfill"
COLLECT = "sensor-collect/modbus-10-minute-windows"
# gateway rows are stamped at half past a second; the collector's readings never are, so the
# report can count exactly which raw rows came from the gateways
GATEWAY_MICROSECOND = 500_000


def sh(*cmd: str, env: dict[str, str], timeout: float = 1200) -> str:
    done = subprocess.run(cmd, env=env, cwd=ROOT, capture_output=True, text=True, timeout=timeout)
    if done.returncode:
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
    return done.stdout


async def ash(*cmd: str, env: dict[str, str], timeout: float = 1200) -> str:
    """`sh` off the event loop (the gate's connections and the feeder keep going meanwhile)."""
    return await asyncio.to_thread(sh, *cmd, env=env, timeout=timeout)


PENDING_MINUTES = 3  # a run Pending this long is marked Crashed (15 in production: MONTRG_PENDING_MINUTES, the automation)


def compressed(config: dict) -> dict:
    """prefect.yaml with every schedule every minute, sensor_collect windows of a minute, and runs
    left Pending ended after PENDING_MINUTES."""
    out = dict(config)
    out["deployments"] = []
    for d in config["deployments"]:
        d = {**d, "parameters": dict(d.get("parameters", {}))}
        pool = dict(d["work_pool"])
        pool["job_variables"] = {**pool.get("job_variables", {}), "env": {"MONTRG_PENDING_MINUTES": str(PENDING_MINUTES)}}
        d["work_pool"] = pool
        if d.get("schedules"):
            d["schedules"] = [{**s, "cron": "* * * * *"} for s in d["schedules"]]
        if d["entrypoint"].endswith(":sensor_collect"):
            d["parameters"].update(duration_seconds=60, interval_seconds=10)
        out["deployments"].append(d)
    return out


async def admin(url: str, statement: str) -> list:
    import asyncpg

    conn = await asyncpg.connect(url)
    try:
        return await conn.fetch(statement)
    finally:
        await conn.close()


@dataclass
class Plant:
    """Where the soak's databases live: `servers` by role (the server's admin URL), `names` by role,
    and the port the pipeline reaches the gateways' database on (the gate's, with faults)."""

    servers: dict[str, str]
    names: dict[str, str]
    gateway_port: int = 5432
    cluster: PrivateCluster | None = None
    gate: Gate | None = None

    def url(self, role: str) -> str:
        return f"{self.servers[role].rsplit('/', 1)[0]}/{self.names[role]}"

    def block_url(self, role: str) -> str:
        """The URL in the pipeline's block: the gateways' database through the gate."""
        return self.url(role) if role != "gw" else f"postgresql://postgres@127.0.0.1:{self.gateway_port}/{self.names['gw']}"


async def set_up_databases(plant: Plant) -> tuple:
    """Databases, blocks, schema, master data with the floor's sensors, history, the device table."""
    from sqlalchemy import MetaData, text

    from blocks import create_block, open_database
    from flows.ops import seed
    from flows.settings import plant_now
    from flows.store.schema import device_table, init_schema

    for role, name in plant.names.items():
        await admin(plant.servers[role], f'CREATE DATABASE "{name}"')
    for block, role in (("pg-fdw-v1-iot", "iot"), ("pg-fdw-v2-hq", "hq"), ("montrg-device", "gw")):
        await create_block(block, plant.block_url(role))
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


async def feed_gateway(stop: asyncio.Event, cfg, url: str) -> int:
    """Gateway rows every 20 s: one per answering location, every 50th value malformed. The gateways
    write to their database directly (`url`), so they go on writing while the pipeline cannot reach it."""
    from sqlalchemy import MetaData, insert
    from sqlalchemy.ext.asyncio import create_async_engine

    from flows.ops import simulate
    from flows.settings import plant_now
    from flows.store.schema import device_table

    gateway = device_table("dbo.temperature", MetaData())
    written = 0
    engine = create_async_engine(url.replace("postgresql://", "postgresql+asyncpg://"))
    try:
        while not stop.is_set():
            now = plant_now().replace(microsecond=0)
            raw = simulate.readings(cfg.locations, now, now + timedelta(seconds=1), every_seconds=1, prefix=demo_prefix(), seed=written)
            rows = [
                {"sensor_id": r["loc_id"].replace(demo_prefix(), "DEMO-S"), "device_id": "GW-01",
                 "capture_dt": r["capture_dt"].replace(microsecond=GATEWAY_MICROSECOND),
                 "t1": "ERR" if (written + i) % 50 == 0 else text(r["temperature"]), "t2": text(r["humidity"]), "t3": text(r["pcv_temperature"]),
                 "t4": None, "t5": None, "t6": None, "upload_yn": "Y", "upload_dt": plant_now()}
                for i, r in enumerate(raw.iter_rows(named=True))
            ]
            async with engine.begin() as conn:
                await conn.execute(insert(gateway), rows)
            written += len(rows)
            try:
                await asyncio.wait_for(stop.wait(), 20)
            except TimeoutError:
                pass
    finally:
        await engine.dispose()
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
        out = await ash(
            str(BIN / "prefect"), "deployment", "run", BACKFILL, "--param", f"start={start:%Y-%m-%d}",
            "--param", f"end={end:%Y-%m-%d}", "--param", "fan_out=true", "--param", "chunk_hours=12", "--param", "max_parallel=2",
            env=env,
        )
        ids.append(next(line.split("UUID:")[1].strip() for line in out.splitlines() if "UUID:" in line))
    return ids


async def read_runs(**filters) -> list:
    from prefect.client.orchestration import get_client

    async with get_client() as client:
        runs, offset = [], 0
        while more := await client.read_flow_runs(limit=200, offset=offset, **filters):
            runs += more
            offset += len(more)
    return runs


async def until_running(what: str, match, timeout: float) -> object | None:
    """The first Running flow run that `match`es, within `timeout` seconds (None: none ran)."""
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterState, FlowRunFilterStateType
    from prefect.client.schemas.objects import StateType

    deadline = time.monotonic() + timeout
    running = FlowRunFilter(state=FlowRunFilterState(type=FlowRunFilterStateType(any_=[StateType.RUNNING])))
    while time.monotonic() < deadline:
        for run in await read_runs(flow_run_filter=running):
            if await match(run):
                return run
        await asyncio.sleep(1)
    print(f"  (no {what} was running within {timeout:.0f} s)", flush=True)
    return None


async def deployment_names() -> dict:
    from prefect.client.orchestration import get_client

    async with get_client() as client:
        flows = {f.id: f.name for f in await client.read_flows()}
        return {d.id: f"{flows.get(d.flow_id, '?')}/{d.name}" for d in await client.read_deployments()}


async def wait_healthy(port: int, timeout: float = 180) -> None:
    import httpx

    deadline = time.monotonic() + timeout
    async with httpx.AsyncClient() as http:
        while time.monotonic() < deadline:
            try:
                if (await http.get(f"http://127.0.0.1:{port}/api/health", timeout=5)).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            await asyncio.sleep(1)
    raise RuntimeError(f"the Prefect server on port {port} did not answer within {timeout:.0f} s")


@dataclass
class Soak:
    """What the faults act on, and what the report reads."""

    env: dict[str, str]
    home: Path
    port: int
    plant: Plant
    today: datetime
    server: Service
    workers: list[Service]
    backfills: list[str] = field(default_factory=list)

    def plan(self, minutes: float) -> list[Fault]:
        core = [
            Fault("database restart", "the PostgreSQL server of the IoT and HQ databases stopped (fast shutdown), started 60 s later",
                  60, SCHEDULED, self.restart_database),
            Fault("Prefect server killed", "SIGKILL, started again 60 s later on the same database and port", 60, SCHEDULED,
                  self.kill_server),
            Fault("worker killed", "a Docker worker SIGKILLed while a flow run executes on it, a new one started 30 s later", 30,
                  SCHEDULED, self.kill_worker),
        ]
        if minutes < 25:
            return core
        return [*core,
                Fault("backends terminated", "three fanned-out backfills started; every backend of the IoT and HQ databases "
                      "terminated (pg_terminate_backend) while their chunks run", 0, (BACKFILL,), self.terminate_backends),
                Fault("gateway database unreachable", "its port closed for 10 minutes (the gateways still write to it)", 600,
                      ("temperature-raw-etl/every-10-minutes",), self.cut_gateway),
                Fault("HQ table locked", "ACCESS EXCLUSIVE lock on flet_montrg.temperature held 3 minutes during an hourly run",
                      180, ("temperature-etl/hourly",), self.lock_hq)]

    async def restart_database(self, fault: Fault) -> None:
        cluster = self.plant.cluster
        assert cluster is not None
        fault.inject()
        await asyncio.to_thread(cluster.stop, "fast")
        await asyncio.sleep(fault.seconds)
        await asyncio.to_thread(cluster.start)
        fault.heal()

    async def kill_server(self, fault: Fault) -> None:
        fault.inject()
        self.server.kill()
        await asyncio.sleep(fault.seconds)
        self.server.start()
        await wait_healthy(self.port)
        fault.heal()

    async def kill_worker(self, fault: Fault) -> None:
        by_run = {}

        async def on_a_worker(run) -> bool:
            by_run.update({r: w for w in self.workers for r in w.submitted()})
            return str(run.id) in by_run

        run = await until_running("run on a worker", on_a_worker, 180)
        worker = by_run[str(run.id)] if run else self.workers[0]
        fault.inject()
        worker.kill()
        fault.detail = f"{worker.name} killed while running {run.name if run else 'nothing'}" + (f" ({run.id})" if run else "")
        await asyncio.sleep(fault.seconds)
        worker.start()
        fault.heal()

    async def terminate_backends(self, fault: Fault) -> None:
        from flows.pipelines.fanout import CHUNK_TAG

        self.backfills += await start_backfills(self.env, self.today)

        async def chunk(run) -> bool:
            return CHUNK_TAG in (run.tags or [])

        run = await until_running("backfill chunk", chunk, 300)
        fault.inject()
        names = ", ".join(f"'{self.plant.names[r]}'" for r in ("iot", "hq"))
        # the pids first, then the terminations: in one WHERE, PostgreSQL may call pg_terminate_backend
        # before it checks pid <> pg_backend_pid(), and terminate the soak's own connection
        killed = await admin(self.plant.servers["iot"], "SELECT p.pid FROM (SELECT pid FROM pg_stat_activity WHERE datname IN ("
                             + names + ") AND pid <> pg_backend_pid() OFFSET 0) p, LATERAL pg_terminate_backend(p.pid) t WHERE t")
        fault.heal()
        fault.detail = f"{len(killed)} backends terminated while {run.name if run else 'no chunk'} ran"

    async def cut_gateway(self, fault: Fault) -> None:
        gate = self.plant.gate
        assert gate is not None
        fault.inject()
        await gate.close()
        await asyncio.sleep(fault.seconds)
        await gate.open()
        fault.heal()

    async def lock_hq(self, fault: Fault) -> None:
        import asyncpg

        names = await deployment_names()

        async def hourly(run) -> bool:
            return names.get(run.deployment_id) == "temperature-etl/hourly"

        run = await until_running("hourly run", hourly, 120)
        conn = await asyncpg.connect(self.plant.url("hq"))
        try:
            async with conn.transaction():
                await conn.execute("LOCK TABLE flet_montrg.temperature IN ACCESS EXCLUSIVE MODE")
                fault.inject()
                fault.detail = f"taken while {run.name if run else 'no hourly run'} ran"
                await asyncio.sleep(fault.seconds)
                raise _Release
        except _Release:
            pass
        finally:
            await conn.close()
        fault.heal()


class _Release(Exception):
    """Rolls the lock's transaction back."""


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
    print(f"! still busy after {timeout:.0f} s: " + ", ".join(f"{r.name} {state_of(r)} since {r.state.timestamp:%H:%M:%S}"
                                                           for r in [*busy, *due][:8]), flush=True)


def state_of(run) -> str:
    return run.state.name if run.state else "?"


async def report_runs(runs: list, names: dict, backfills: list[str], faults: list[Fault]) -> bool:
    """Runs by deployment and state, late starts, runs left unfinished, failed runs and what covered them."""
    ok = True
    now = datetime.now(UTC)
    by_state = Counter((names.get(r.deployment_id, f"{r.flow_id}/-"), state_of(r)) for r in runs)
    print("\nruns by deployment and state:")
    for (name, state), count in sorted(by_state.items()):
        print(f"  {name:<50} {state:<12} {count:>4}")
    scheduled = [r for r in runs if r.auto_scheduled and r.start_time and r.expected_start_time]
    lateness = sorted((r.start_time - r.expected_start_time).total_seconds() for r in scheduled)
    if lateness:
        print(
            f"\nlate starts of {len(lateness)} scheduled runs (start - scheduled time): median {statistics.median(lateness):.1f} s, "
            f"p90 {lateness[int(0.9 * (len(lateness) - 1))]:.1f} s, max {lateness[-1]:.1f} s; over 60 s: {sum(x > 60 for x in lateness)}"
        )
    left = [r for r in runs if r.state and (r.state.type.value in ("RUNNING", "PENDING", "CANCELLING") or r.state.name == "Late"
            or (r.state.type.value == "SCHEDULED" and r.expected_start_time and r.expected_start_time < now))]
    print(f"runs left Running, Pending or Late: {len(left)}")
    for r in left[:10]:
        print(f"  ! {names.get(r.deployment_id, '-')} {r.name}: {state_of(r)} since {r.state.timestamp:%H:%M:%S}")
    ok &= not left
    states = {r.id: state_of(r) for r in runs}
    print("fanned-out backfills: " + ", ".join(states.get(uuid.UUID(b), "?") for b in backfills))
    ok &= all(states.get(uuid.UUID(b)) == "Completed" for b in backfills)

    bad = sorted((r for r in runs if r.state and r.state.type.value in ("FAILED", "CRASHED")), key=lambda r: r.expected_start_time)
    if not faults:
        for r in bad[:20]:
            print(f"  ! {r.name}: {state_of(r)}: {(r.state.message or '')[:300]}")
        return ok and not bad
    print(f"runs that failed or crashed: {len(bad)}" + (", each with the run that covered its window:" if bad else ""))
    for r in bad:
        fault = " or ".join(suspected_faults(r, faults, now)) or "no fault"
        print(f"  {names.get(r.deployment_id, '-')} {r.name} ({fault}): {state_of(r)}: {' '.join((r.state.message or '').split())[:160]}")
        if names.get(r.deployment_id) == COLLECT:  # polling happens now or never: no later run can take its readings
            print("    its window was not polled (or only in part): no run can cover it; the hours' coverage records the gap")
            continue
        cover = covering_run(r, runs, names)
        print(f"    covered by {cover.name} ({state_of(cover)} at {cover.end_time:%H:%M:%S})" if cover else "    ! covered by no run")
        ok &= cover is not None
    return ok


def suspected_faults(run, faults: list[Fault], now: datetime) -> list[str]:
    """The faults that may have ended `run`: injected before it ended (5 s of slack between the
    soak's clock and the server's) and healed at most five minutes before, the latest first. A run
    scheduled during one fault may end in the next one (a run held back by the database restart,
    started a second before the Prefect server was killed, crashes for the server), so every
    candidate is named, not the first in the plan."""
    ended = run.end_time or run.expected_start_time
    under_way = [f for f in faults if f.injected and f.injected - timedelta(seconds=5) <= ended <= (f.healed or now) + timedelta(minutes=5)]
    return [f.name for f in sorted(under_way, key=lambda f: f.injected, reverse=True)]


def covering_run(failed, runs: list, names: dict):
    """The run that later did a failed run's work: for a scheduled run (every job catches up from its
    watermark or re-reads its lookback), the next Completed run of its deployment; for a run started
    with parameters (a backfill chunk), a Completed run of the same deployment and parameters after it."""
    after = failed.end_time or failed.expected_start_time
    same = [r for r in runs if r.deployment_id == failed.deployment_id and state_of(r) == "Completed" and r.end_time and r.end_time > after
            and (failed.auto_scheduled or r.parameters == failed.parameters)]
    if not same and names.get(failed.deployment_id) == BACKFILL:  # a chunk its parent gave up on: the parent's rerun covers it
        same = [r for r in runs if r.deployment_id == failed.deployment_id and state_of(r) == "Completed" and r.end_time
                and r.end_time > after and covers(r.parameters, failed.parameters)]
    return min(same, key=lambda r: r.end_time, default=None)


def covers(outer: dict, inner: dict) -> bool:
    try:
        return str(outer["start"])[:10] <= str(inner["start"])[:10] and str(inner["end"])[:10] <= str(outer["end"])[:10]
    except KeyError:
        return False


def report_recovery(faults: list[Fault], runs: list, names: dict) -> bool:
    """Per fault, from its heal to the first Completed run of each deployment it hit."""
    ok = True
    print("\nfaults (times UTC), and the time from each heal to the first Completed run of each deployment it hit:")
    for f in faults:
        print(f"  {f.name}: {f.what}")
        if not (f.injected and f.healed):
            print("    ! not injected")
            ok = False
            continue
        print(f"    injected {f.injected:%H:%M:%S}, healed {f.healed:%H:%M:%S} ({(f.healed - f.injected).total_seconds():.0f} s)"
              + (f"; {f.detail}" if f.detail else ""))
        for deployment in f.affects:
            done = [r.end_time for r in runs if names.get(r.deployment_id) == deployment and state_of(r) == "Completed"
                    and r.end_time and r.end_time > f.healed]
            if done:
                print(f"    {deployment:<42} recovered in {(min(done) - f.healed).total_seconds():6.1f} s")
            else:
                print(f"    ! {deployment:<40} no Completed run after the heal")
                ok = False
    return ok


async def compare_hours(before: datetime, label: str) -> bool:
    """HQ `temperature` against PostgreSQL's own GROUP BY over the raw rows, every hour before `before`."""
    from sqlalchemy import text

    from blocks import open_database

    async with open_database("pg-fdw-v1-iot") as iot, open_database("pg-fdw-v2-hq") as hq:
        async with iot.engine.connect() as conn:
            expected = {tuple(r[:3]): r[3:] for r in (await conn.execute(text(
                "SELECT loc_id, to_char(capture_dt, 'YYYYMMDD'), to_char(capture_dt, 'HH24'), COUNT(*), "
                "MAX(temperature), MIN(temperature), ROUND(AVG(temperature)::numeric, 4), MAX(humidity), MIN(humidity) "
                "FROM flet_montrg.temperature_raw WHERE capture_dt < :hour GROUP BY 1, 2, 3"), {"hour": before})).all()}
            raw_rows = (await conn.execute(text("SELECT COUNT(*) FROM flet_montrg.temperature_raw WHERE capture_dt < :hour"),
                                           {"hour": before})).scalar()
        async with hq.engine.connect() as conn:
            got = {tuple(r[:3]): r[3:] for r in (await conn.execute(text(
                "SELECT loc_id, ymd, hh, sample_count, temperature_max, temperature_min, ROUND(temperature_avg::numeric, 4), "
                "humidity_max, humidity_min FROM flet_montrg.temperature WHERE ymd || hh < :key"), {"key": f"{before:%Y%m%d%H}"})).all()}
            hq_locations = (await conn.execute(text("SELECT COUNT(*) FROM flet_montrg.locations"))).scalar()
    missing, extra = expected.keys() - got.keys(), got.keys() - expected.keys()
    differ = [k for k in expected.keys() & got.keys() if not same(expected[k], got[k])]
    print(
        f"\nHQ temperature vs PostgreSQL GROUP BY of {raw_rows:,} raw rows, {label} (hours before {before:%Y-%m-%d %H:%M}): "
        f"{len(expected)} location-hours expected, {len(got)} in HQ; missing {len(missing)}, extra {len(extra)}, differing {len(differ)}"
    )
    for k in sorted(missing | extra)[:5] + differ[:5]:
        print(f"  ! {k}: expected {expected.get(k)}, HQ {got.get(k)}")
    print(f"master data in HQ: {hq_locations} locations")
    return not (missing or extra or differ) and hq_locations > 0


async def report_gateway(written: int) -> bool:
    """Every gateway row the feeder wrote is loaded or rejected, exactly once."""
    from sqlalchemy import text

    from blocks import open_database

    async with open_database("pg-fdw-v1-iot") as iot, iot.engine.connect() as conn:
        loaded = (await conn.execute(text(
            "SELECT COUNT(*) FROM flet_montrg.temperature_raw WHERE date_part('microseconds', capture_dt)::bigint % 1000000 = :us"),
            {"us": GATEWAY_MICROSECOND})).scalar()
        rejected, distinct, both = (await conn.execute(text(
            "SELECT COUNT(*), COUNT(DISTINCT row_key), COUNT(*) FILTER (WHERE EXISTS (SELECT 1 FROM flet_montrg.temperature_raw r "
            "WHERE r.loc_id = j.loc_id AND r.capture_dt = j.capture_dt)) FROM flet_montrg.temperature_raw_reject j "
            "WHERE source LIKE 'device:%'"))).one()
    print(f"\ngateway rows written {written:,} = loaded {loaded:,} + rejected with their reasons {rejected:,}"
          f" ({'holds' if written == loaded + rejected else 'DOES NOT HOLD'}); rejected twice: {rejected - distinct}, "
          f"both loaded and rejected: {both}")
    return written == loaded + rejected and rejected == distinct and both == 0


async def report_alerts(since: datetime, before: datetime, webhook: Webhook | None, faults: list[Fault]) -> bool:
    """Coverage alerts against the hourly rows of the hours the soak judged, and what was notified."""
    from sqlalchemy import text

    from blocks import open_database
    from flows.settings import coverage_min

    low = coverage_min()
    keys = {"since": f"{since:%Y%m%d%H}", "before": f"{before:%Y%m%d%H}", "low": low}
    async with open_database("pg-fdw-v2-hq") as hq, hq.engine.connect() as conn:
        stale = (await conn.execute(text(
            "SELECT a.loc_id, a.alert_time, t.coverage FROM flet_montrg.alerts a JOIN flet_montrg.temperature t ON t.loc_id = a.loc_id "
            "AND t.ymd = to_char(a.alert_time, 'YYYYMMDD') AND t.hh = to_char(a.alert_time, 'HH24') WHERE a.measure = 'coverage' "
            "AND a.status = 'open' AND t.coverage >= :low AND to_char(a.alert_time, 'YYYYMMDDHH24') >= :since "
            "AND to_char(a.alert_time, 'YYYYMMDDHH24') < :before"), keys)).all()
        unalerted = (await conn.execute(text(
            "SELECT t.loc_id, t.ymd, t.hh, t.coverage FROM flet_montrg.temperature t JOIN flet_montrg.locations l ON l.loc_id = t.loc_id "
            "WHERE l.is_active AND t.coverage < :low AND t.ymd || t.hh >= :since AND t.ymd || t.hh < :before AND NOT EXISTS ("
            "SELECT 1 FROM flet_montrg.alerts a WHERE a.loc_id = t.loc_id AND a.measure = 'coverage' AND a.status = 'open' "
            "AND to_char(a.alert_time, 'YYYYMMDDHH24') = t.ymd || t.hh)"), keys)).all()
        opened = (await conn.execute(text(
            "SELECT COUNT(*) FILTER (WHERE status = 'open'), COUNT(*) FILTER (WHERE status = 'resolved') FROM flet_montrg.alerts "
            "WHERE measure = 'coverage' AND to_char(alert_time, 'YYYYMMDDHH24') >= :since AND to_char(alert_time, 'YYYYMMDDHH24') < :before"),
            keys)).one()
    print(f"\ncoverage alerts of the hours {since:%H}:00..{before:%H}:00: {opened[0]} open, {opened[1]} resolved; open for an hour "
          f"whose readings are in (coverage >= {low:g}): {len(stale)}; an hour below {low:g} with no open alert: {len(unalerted)}")
    for row in [*stale, *unalerted][:5]:
        print(f"  ! {tuple(row)}")
    ok = not stale and not unalerted
    if webhook is not None:
        subjects = webhook.subjects()
        failed = [s for s in subjects if s.endswith((" Failed", " Crashed", " TimedOut"))]
        print(f"notifications received: {len(subjects)}; failed or crashed runs announced: {len(failed)}")
        for s in failed[:10]:
            print(f"  {s}")
        if faults:
            ok &= bool(failed) or not any(f.name == "gateway database unreachable" for f in faults)
    return ok


def same(expected: tuple, got: tuple) -> bool:
    """Counts, maxima and minima exact; the average within its 4-decimal rounding."""
    for n, (e, g) in enumerate(zip(expected, got)):
        if (e is None) != (g is None):
            return False
        if e is not None and (abs(float(e) - float(g)) > 1.01e-4 if n == 3 else float(e) != float(g)):
            return False
    return True
async def soak(minutes: float, home: Path, port: int, faults_on: bool, tail: float) -> int:
    from flows.settings import plant_now

    env = {**os.environ, "MONTRG_BASE_IMAGE": BASE, "MONTRG_DOCKER_BUILD_NETWORK": "host"}
    tag = uuid.uuid4().hex[:8]
    names = {role: f"montrg_soak_{role}_{tag}" for role in ("iot", "hq", "gw")}
    shared = f"{SHARED_PG}/postgres"
    plant = Plant({role: shared for role in names}, names)
    if faults_on:
        plant.cluster = PrivateCluster(home / "pg")
        await asyncio.to_thread(plant.cluster.create)
        plant.servers.update(iot=plant.cluster.url(), hq=plant.cluster.url())
        plant.gate = Gate(5432)
        await plant.gate.open()
        plant.gateway_port = plant.gate.port
    server = Service("prefect-server", [str(BIN / "prefect"), "server", "start", "--host", "127.0.0.1", "--port", str(port)],
                     {**env, **server_settings()},
                     home / "server.log")
    workers = [Service(f"soak-{n}", [str(BIN / "prefect"), "worker", "start", "--pool", POOL, "--type", "docker", "--limit", "3",
                                     "--name", f"soak-{n}"], env, home / f"worker-soak-{n}.log") for n in (1, 2)]
    webhook = Webhook()
    started = time.monotonic()
    try:
        server.start()
        await ash("bash", "deployments/docker-engine.sh", env=env, timeout=300)
        await ash("bash", "deployments/local-base-image.sh", BASE, env=env, timeout=900)
        await wait_healthy(port)
        cfg, floor, silent, today = await set_up_databases(plant)
        print(await ash(str(BIN / "montrg"), "pool", "create", "--pool", POOL, "--no-registry", env=env))
        spec = home / "prefect-soak.yaml"
        spec.write_text(yaml.safe_dump(compressed(yaml.safe_load((ROOT / "prefect.yaml").read_text())), sort_keys=False))
        await ash(str(BIN / "prefect"), "--no-prompt", "deploy", "--all", "--prefect-file", str(spec), env=env)
        await notify_to(webhook, env)
        print(await ash(str(BIN / "montrg"), "doctor", "--pool", POOL, "--pause-unready", env=env))
        for worker in workers:
            worker.start()
        ctx = Soak(env, home, port, plant, today, server, workers)
        faults = ctx.plan(minutes) if faults_on else []
        print(f"set up in {time.monotonic() - started:.0f} s; soaking {minutes:g} minutes"
              f"{f' with {len(faults)} faults, then {tail:g} more' if faults else ''} (Prefect UI: http://127.0.0.1:{port}; "
              f"logs in {home})", flush=True)
        began = plant_now()
        stop = asyncio.Event()
        feeder = asyncio.create_task(feed_gateway(stop, cfg, plant.url("gw")))
        if faults:
            if not any(f.name == "backends terminated" for f in faults):
                ctx.backfills += await start_backfills(env, today)
            await run_plan(faults, minutes, lambda line: print(line, flush=True))
            await asyncio.sleep(max(0.0, tail * 60 - 150))
        else:
            await asyncio.sleep(minutes * 30)
            ctx.backfills += await start_backfills(env, today)
            print(f"{minutes / 2:g} min: started 3 fanned-out backfills at once", flush=True)
            await asyncio.sleep(minutes * 30)
        stop.set()
        fed = await feeder
        await asyncio.sleep(150)  # two more minutes of every schedule: the last gateway rows are loaded, then aggregated
        await ash(str(BIN / "prefect"), "--no-prompt", "deployment", "schedule", "pause", "--all", env=env)
        end = plant_now()
        await wait_idle(600)
        print(f"\nsoak of {minutes:g} minutes done; the feeder wrote {fed:,} gateway rows")
        await floor.stop()
        await silent.stop()
        failed = await full_report(ctx, faults, webhook, fed, began, end)
        # the hour under way is not an ended hour yet: aggregate it once by hand, as a user would, and compare everything
        current = end.replace(minute=0, second=0, microsecond=0)
        out = await ash(str(BIN / "prefect"), "deployment", "run", "temperature-etl/hourly", "--param", f"hour={current:%Y-%m-%dT%H:%M}",
                        env=env)
        final = next(line.split("UUID:")[1].strip() for line in out.splitlines() if "UUID:" in line)
        await wait_idle(600)
        states = {str(r.id): state_of(r) for r in await read_runs()}
        print(f"\nthen the hour under way by hand ({current:%H}:00): {states.get(final, '?')}")
        if states.get(final) != "Completed":
            failed.append("the hour under way, run by hand, Completed")
        if not await compare_hours(current + timedelta(hours=1), "every hour, the last one by hand"):
            failed.append("HQ = GROUP BY, every hour")
        print("\nsoak passed" if not failed else "\nsoak FAILED: " + "; ".join(failed))
        return 0 if not failed else 1
    finally:
        for worker in workers:
            worker.stop()
        server.stop()
        webhook.close()
        for role, name in names.items():
            try:
                await admin(plant.servers[role], f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            except (OSError, ConnectionError) as exc:  # a private cluster that is down goes with its folder
                print(f"dropping {name}: {exc}")
        if plant.gate is not None:
            await plant.gate.close()
        if plant.cluster is not None:
            await asyncio.to_thread(plant.cluster.destroy)


async def notify_to(webhook: Webhook, env: dict[str, str]) -> None:
    """The shipped automations, notifying the soak's loopback webhook (failed runs, alerts, the SLA)."""
    from prefect.blocks.notifications import CustomWebhookNotificationBlock

    await CustomWebhookNotificationBlock(name="soak", url=webhook.url, json_data={"subject": "{{subject}}", "body": "{{body}}"}).save(
        "soak-team", overwrite=True)
    print(await ash(str(BIN / "montrg"), "automations", "apply", "--notify", "custom-webhook/soak-team",
                    "--pending-minutes", str(PENDING_MINUTES), env=env))


async def full_report(ctx: Soak, faults: list[Fault], webhook: Webhook, fed: int, began: datetime, end: datetime) -> list[str]:
    """Every check's report; the names of the checks that failed."""
    runs = await read_runs()
    names = await deployment_names()
    checks = {"runs: none left open, backfills completed, every failed run covered": await report_runs(runs, names, ctx.backfills, faults)}
    if faults:
        checks["a Completed run of every deployment after each fault"] = report_recovery(faults, runs, names)
    # ended hours: every hour that ended 3 minutes (three runs of each schedule) before the schedules were paused
    ended = (end - timedelta(minutes=3)).replace(minute=0, second=0, microsecond=0)
    checks["HQ = GROUP BY, ended hours"] = await compare_hours(ended, "every ended hour, no run started by hand")
    checks["gateway rows loaded or rejected"] = await report_gateway(fed)
    checks["coverage alerts and notifications"] = await report_alerts(
        began.replace(minute=0, second=0, microsecond=0) - timedelta(hours=3), ended, webhook, faults)
    return [name for name, ok in checks.items() if not ok]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=30)
    parser.add_argument("--faults", action="store_true", help="inject faults while the schedules run (deployments/faults.py)")
    parser.add_argument("--tail", type=float, default=10, help="with --faults: minutes the schedules run after the last fault")
    args = parser.parse_args()
    if not 2 <= args.minutes <= 24 * 60:
        raise SystemExit(f"--minutes={args.minutes} must be 2..1440")
    if args.faults and not (5 <= args.minutes and 3 <= args.tail <= 600):
        raise SystemExit(f"--faults needs --minutes >= 5 (was {args.minutes}) and --tail 3..600 (was {args.tail})")
    if args.faults and not shutil.which("initdb") and not Path("/usr/lib/postgresql").exists():
        raise SystemExit("--faults needs PostgreSQL's initdb and pg_ctl (Debian: postgresql) for a cluster of the soak's own")
    # the soak's own Prefect server, in the environment before anything imports Prefect
    home = Path(tempfile.mkdtemp(prefix="montrg-soak-"))
    os.chmod(home, 0o755)  # the private cluster's folder inside is the postgres user's
    port = 4400 + os.getpid() % 500
    os.environ.update(PREFECT_HOME=str(home), PREFECT_API_URL=f"http://127.0.0.1:{port}/api", PREFECT_SERVER_ANALYTICS_ENABLED="false")
    raise SystemExit(asyncio.run(soak(args.minutes, home, port, args.faults, args.tail)))


if __name__ == "__main__":
    main()
