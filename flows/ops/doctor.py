"""`montrg doctor`: is everything a deployed flow needs in place? Says what is missing and the
command that fixes it, and can pause the schedules of deployments that would fail.

What each flow needs (read from each deployment's own parameters, the flow's defaults where it
sets none):

| flow | needs |
| --- | --- |
| temperature-etl, temperature-backfill | source and target blocks; temperature_raw in the source; temperature, etl_watermark, thresholds, alerts in the target |
| master-etl | source and target blocks; locations, sensors, thresholds in both |
| temperature-raw-etl, temperature-raw-backfill | source block with the raw tables; the device block and its device table |
| sensor-collect | source block with the raw tables; at least one active sensor with a Modbus endpoint |

Besides: the Prefect API answers; the work pool exists with its queues, removes finished
containers and has a pull policy (Docker); a worker is online.
"""

from __future__ import annotations

import inspect
import os
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Table

from flows.pipelines.hourly import SOURCE_TABLES as ETL_SOURCE
from flows.pipelines.hourly import TARGET_TABLES as ETL_TARGET
from flows.pipelines.master_etl import MASTER_TABLES as MASTER
from flows.pipelines.raw import RAW_TABLES as RAW
from flows.settings import CHUNK_QUEUE, DEFAULT_POOL

FLOW_FUNCTIONS = {  # Prefect flow name: function name in `flows`
    "temperature-etl": "temperature_etl",
    "temperature-backfill": "temperature_backfill",
    "master-etl": "master_etl",
    "temperature-raw-etl": "temperature_raw_etl",
    "temperature-raw-backfill": "temperature_raw_backfill",
    "sensor-collect": "sensor_collect",
}


@dataclass
class Finding:
    subject: str
    ok: bool
    detail: str
    fix: str = ""

    def line(self) -> str:
        mark = "ok     " if self.ok else "MISSING"
        return f"{mark} {self.subject}: {self.detail}" + (f"\n          fix: {self.fix}" if self.fix else "")


@dataclass
class Report:
    findings: list[Finding] = field(default_factory=list)
    schedule_changes: list[str] = field(default_factory=list)
    blocking: list[str] = field(default_factory=list)  # what makes a run fail now (exit status 1)


def needs(flow_name: str, params: dict[str, Any]) -> list[tuple[str, str, Any]]:
    """What a run of `flow_name` with `params` needs: (kind, block, detail) triples."""
    source, target = params.get("source_block"), params.get("target_block")
    iot = params.get("iot_block") if params.get("source_block") is None else source  # the raw flows' (deprecated: source_block)
    if flow_name in ("temperature-etl", "temperature-backfill"):
        return [("tables", source, ETL_SOURCE), ("tables", target, ETL_TARGET)]
    if flow_name == "master-etl":
        return [("tables", source, MASTER), ("tables", target, MASTER)]
    if flow_name in ("temperature-raw-etl", "temperature-raw-backfill"):
        return [("tables", iot, RAW), ("device", params.get("device_block"), params.get("device_table"))]
    if flow_name == "sensor-collect":
        return [("tables", iot, RAW), ("sensors", iot, None)]
    return []


def flow_defaults(flow_name: str) -> dict[str, Any]:
    import flows

    signature = inspect.signature(getattr(flows, FLOW_FUNCTIONS[flow_name]).fn)
    return {k: p.default for k, p in signature.parameters.items() if p.default is not inspect.Parameter.empty}


class Checker:
    """Runs each check once (several deployments share blocks) and remembers the findings."""

    def __init__(self) -> None:
        self.cache: dict[tuple, Finding] = {}

    async def check(self, kind: str, block: str, detail: Any) -> Finding:
        key = (kind, block, repr(detail))
        if key not in self.cache:
            self.cache[key] = await getattr(self, f"_{kind}")(block, detail)
        return self.cache[key]

    async def _block(self, block: str, _: Any) -> Finding:
        from blocks import BlockNotFound, open_database

        try:
            async with open_database(block) as db:
                return Finding(f"block {block}", True, db.describe())
        except BlockNotFound:
            return Finding(f"block {block}", False, "does not exist", f"montrg blocks create {block} postgresql://USER:PASSWORD@HOST:5432/DB")
        except ValueError as exc:
            return Finding(f"block {block}", False, str(exc))

    async def _tables(self, block: str, tables: list[Table]) -> Finding:
        from blocks import open_database
        from flows.errors import MissingTableError
        from flows.pipelines.policy import require_tables

        found = await self.check("block", block, None)
        subject = f"tables of {block} ({', '.join(t.name for t in tables)})"
        if not found.ok:
            return Finding(subject, False, f"block {block} is missing", found.fix)
        try:
            async with open_database(block) as db:
                await require_tables(db, tables)
        except MissingTableError as exc:
            return Finding(subject, False, str(exc), f"montrg db init --block {block}")
        except Exception as exc:  # noqa: BLE001 - a doctor reports every failure, one line each
            return Finding(subject, False, f"{type(exc).__name__}: {exc}", f"check that block {block}'s database is up and reachable")
        return Finding(subject, True, "present")

    async def _device(self, block: str, table_name: str) -> Finding:
        from sqlalchemy import inspect as sa_inspect

        from blocks import open_database
        from flows.store.schema import device_table

        found = await self.check("block", block, None)
        subject = f"device table {table_name} in {block}"
        if not found.ok:
            return Finding(subject, False, f"block {block} is missing (the gateways' database)", f"montrg blocks create {block} mysql://USER:PASSWORD@GATEWAY-HOST:3306/DB  (or postgresql://...)")
        table = device_table(table_name)
        try:
            async with open_database(block) as db, db.engine.connect() as conn:
                have = await conn.run_sync(lambda c: sa_inspect(c).has_table(table.name, schema=table.schema))
        except Exception as exc:  # noqa: BLE001
            return Finding(subject, False, f"{type(exc).__name__}: {exc}", f"check that block {block}'s database is up and reachable")
        if not have:
            return Finding(subject, False, "does not exist", "point the deployment's device_table parameter at the gateways' table")
        return Finding(subject, True, "present")

    async def _sensors(self, block: str, _: Any) -> Finding:
        import polars as pl

        from blocks import open_database
        from flows import store
        from flows.store.modbus import parse_registers

        subject = f"Modbus sensors in {block}"
        tables = await self.check("tables", block, RAW)
        if not tables.ok:
            return Finding(subject, False, tables.detail, tables.fix)
        async with open_database(block) as db:
            table = await store.read_sensors(db)
        usable = 0
        for row in table.filter(pl.col("is_active") & pl.col("host").is_not_null()).iter_rows(named=True):
            try:
                parse_registers(row["registers"], row["sensor_id"])
                usable += 1
            except ValueError:
                continue
        if not usable:
            return Finding(
                subject, False, f"no active sensor with a Modbus host and a valid register map ({table.height} rows in sensors)",
                "add the sensors to the IoT database's sensors table (or the master data it is synced from); see docs/flows.md, Raw ingest",
            )
        return Finding(subject, True, f"{usable} active")


async def check_pool(client, pool: str) -> list[Finding]:
    from prefect.exceptions import ObjectNotFound

    from deployments.pool import QUEUES

    try:
        work_pool = await client.read_work_pool(pool)
    except ObjectNotFound:
        return [Finding(f"work pool {pool}", False, "does not exist", f"montrg pool create --pool {pool}  (add --no-registry on hosts without a registry)")]
    out = []
    if work_pool.type == "docker":
        out.append(docker_engine())
        props = work_pool.base_job_template.get("variables", {}).get("properties", {})
        auto_remove = props.get("auto_remove", {}).get("default")
        pull = props.get("image_pull_policy", {}).get("default")
        ok = auto_remove is True and pull is not None
        out.append(Finding(
            f"work pool {pool}", ok, f"docker, auto_remove={auto_remove}, image_pull_policy={pull}",
            "" if ok else f"montrg pool create --pool {pool}  (add --no-registry on hosts without a registry)",
        ))
    else:
        out.append(Finding(f"work pool {pool}", True, work_pool.type))
    queues = {q.name: q for q in await client.read_work_queues(work_pool_name=pool)}
    missing = [q for q in QUEUES if q not in queues]
    out.append(Finding(
        f"queues of {pool}", not missing, f"missing {', '.join(missing)}" if missing else ", ".join(sorted(queues)),
        f"montrg pool create --pool {pool}" if missing else "",
    ))
    workers = [w for w in await client.read_workers_for_work_pool(pool) if str(getattr(w.status, "value", w.status)).upper() == "ONLINE"]
    backfill = queues.get("backfill")
    rule = f"started with --limit N, the workers' limits together above the backfill queue's {backfill.concurrency_limit if backfill else '?'}"
    out.append(Finding(
        f"workers of {pool}", bool(workers), f"{len(workers)} online ({rule})",
        "" if workers else f"prefect worker start --pool {pool} --type {work_pool.type} --limit 3",
    ))
    chunk = queues.get(CHUNK_QUEUE)
    if chunk is not None and backfill is not None and chunk.concurrency_limit is None:
        out.append(Finding(f"queue {CHUNK_QUEUE}", False, "has no concurrency limit", f"montrg pool create --pool {pool}"))
    return out


def configured_api() -> tuple[str | None, str]:
    """(the Prefect API URL this process would use, None when none is set, and the profile it
    comes from): without one, Prefect would start a temporary server, which holds no deployment."""
    from prefect.context import get_settings_context
    from prefect.settings import get_current_settings

    url = get_current_settings().api.url
    return (str(url) if url else None), get_settings_context().profile.name


def no_api_finding(profile: str) -> Finding:
    return Finding(
        "Prefect API", False,
        f"none configured (profile {profile!r} sets no PREFECT_API_URL, nor does the environment); "
        "a temporary server would hold none of your deployments",
        "export PREFECT_API_URL=http://HOST:4200/api (or: prefect config set PREFECT_API_URL=...), "
        "or start a local server with: make server; --ephemeral checks a temporary server anyway",
    )


def docker_engine() -> Finding:
    """Whether the Docker engine answers (a Docker pool's runs and `prefect deploy`'s image build need it)."""
    try:
        import docker

        client = docker.from_env(timeout=5)
        version = client.version().get("Version", "?")
        client.close()
        return Finding("Docker engine", True, f"answers (Docker {version})")
    except Exception as exc:  # the SDK raises DockerException, requests' errors or FileNotFoundError by setup
        where = os.environ.get("DOCKER_HOST") or "unix:///var/run/docker.sock"
        return Finding(
            "Docker engine", False, f"does not answer at {where} ({type(exc).__name__})",
            "start it (systemctl start docker, or: dockerd &) before prefect deploy; or run the flows "
            "without Docker on a process pool: python -m deployments.process_deploy (docs/deployment.md)",
        )


async def diagnose(
    pool: str = DEFAULT_POOL, pause_unready: bool = False, resume_ready: bool = False, ephemeral: bool = False
) -> Report:
    """Check the API, the pool and every flet-montrg deployment's prerequisites. Without a
    configured API, say so (unless `ephemeral`: then check a temporary server)."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowFilter, FlowFilterName

    report = Report()
    url, profile = configured_api()
    if url is None and not ephemeral:
        report.findings.append(no_api_finding(profile))
        report.blocking.append("Prefect API")
        return report
    async with get_client() as client:
        failure = await client.api_healthcheck()
        if failure is not None:
            report.findings.append(Finding("Prefect API", False, f"{client.api_url} does not answer ({type(failure).__name__})", "set PREFECT_API_URL, or start one: make server"))
            report.blocking.append("Prefect API")
            return report
        report.findings.append(Finding("Prefect API", True, str(client.api_url)))
        deployments = await client.read_deployments(flow_filter=FlowFilter(name=FlowFilterName(any_=list(FLOW_FUNCTIONS))))
        flow_names = {f.id: f.name for f in await client.read_flows(flow_filter=FlowFilter(name=FlowFilterName(any_=list(FLOW_FUNCTIONS))))}
        if not deployments:
            report.findings.append(Finding("deployments", False, "no flet-montrg deployment on this server", "prefect --no-prompt deploy --all  (see docs/deployment.md)"))
        pools = sorted({pool} | {d.work_pool_name for d in deployments if d.work_pool_name})
        for name in pools:
            for finding in await check_pool(client, name):
                report.findings.append(finding)
                if not finding.ok and not finding.subject.startswith(("workers", "Docker")):  # may start later
                    report.blocking.append(finding.subject)
        checker = Checker()
        for d in sorted(deployments, key=lambda d: (flow_names.get(d.flow_id, ""), d.name)):
            flow_name = flow_names.get(d.flow_id, "")
            full = f"{flow_name}/{d.name}"
            params = {**flow_defaults(flow_name), **(d.parameters or {})}
            lacking = []
            for kind, block, detail in needs(flow_name, params):
                finding = await checker.check(kind, block, detail)
                if not finding.ok:
                    lacking.append(finding.subject)
            active = [s for s in d.schedules if s.active]
            scheduled = f"{len(active)} of {len(d.schedules)} schedules active" if d.schedules else "no schedule"
            if pause_unready and lacking and active:
                for s in active:
                    await client.update_deployment_schedule(d.id, s.id, active=False)
                report.schedule_changes.append(f"paused the schedules of {full}")
                scheduled = "schedules paused"
            if resume_ready and not lacking and d.schedules and len(active) < len(d.schedules):
                for s in d.schedules:
                    await client.update_deployment_schedule(d.id, s.id, active=True)
                report.schedule_changes.append(f"resumed the schedules of {full}")
                scheduled = "schedules resumed"
            fix = ""
            if lacking and active and not pause_unready:
                report.blocking.append(full)
                fix = "fix what is missing above, or pause it until then: montrg doctor --pause-unready"
            elif not lacking and d.schedules and len(active) < len(d.schedules) and not resume_ready:
                fix = "ready: switch its schedule on with montrg doctor --resume-ready"
            report.findings.append(Finding(
                f"deployment {full}", not lacking, (f"lacks {'; '.join(lacking)}" if lacking else "ready") + f" ({scheduled})", fix,
            ))
        report.findings[1:1] = list(checker.cache.values())
    return report
