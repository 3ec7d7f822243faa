"""The `montrg` command line (also `python -m flows`).

    montrg db init --block NAME        create or upgrade the flet_montrg schema; idempotent
    montrg blocks create NAME URL      save a database block (URL '-' reads it from stdin)
    montrg doctor [--pause-unready|--resume-ready]   what is missing for the deployments, and the fixes
    montrg pool create [--pool NAME] [--no-registry]  the work pool, its job defaults and queues
    montrg automations apply --notify BLOCK [--sla-minutes 60] [--pending-minutes 15]   the shipped automations on the server
    montrg alarms list|ack|mute|unmute   alarm episodes in the HQ database (flows/ops/alarms.py)
    montrg report --hours 24 --out DIR   the plant-health pictures and an HTML page (flows/ops/report.py)
    montrg demo [--keep] [--source-url URL --target-url URL]   the whole pipeline once, simulated

Environment for local runs: a patient start of Prefect's temporary server on small machines and
no telemetry, unless set otherwise.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
import threading
import time
from pathlib import Path

from flows.settings import apply_prefect_defaults


def _db_init(args: argparse.Namespace) -> int:
    from blocks import open_database
    from flows.errors import DatabaseUnavailable
    from flows.pipelines.policy import answering
    from flows.store.schema import init_schema

    async def run() -> None:
        async with open_database(args.block) as db:
            try:
                async with answering(db, "creating the schema"), db.engine.begin() as conn:
                    report = await conn.run_sync(init_schema, db.schema)
            except DatabaseUnavailable as exc:
                raise DatabaseUnavailable(
                    f"{exc}; check that the server runs, or correct the block's URL: montrg blocks create {args.block} URL"
                ) from None
            where = f"schema {db.schema}" if db.schema else "database"
            if not report.changed:
                print(f"{db.describe()}: {where} is up to date, nothing changed")
                return
            print(f"{db.describe()}: {where} initialised")
            if report.created_schema:
                print(f"  created schema {db.schema}")
            for name in report.created_tables:
                print(f"  created table {name}")
            for name in report.added_columns:
                print(f"  added column {name}")
            for name in report.created_indexes:
                print(f"  created index {name}")

    asyncio.run(run())
    return 0


def _blocks_create(args: argparse.Namespace) -> int:
    from blocks import async_url, check_block_url, create_block

    url = sys.stdin.readline().strip() if args.url == "-" else args.url
    try:
        async_url(url)
    except ValueError as exc:
        raise ValueError(f"block {args.name!r} was not saved: {exc}") from None
    version = asyncio.run(check_block_url(args.name, url, args.schema)) if args.check else None
    shown = asyncio.run(create_block(args.name, url, overwrite=not args.no_overwrite, schema=args.schema))
    print(f"saved block {args.name!r}: {shown}" + (f" ({version})" if version else " (not checked: --no-check)"))
    return 0


def _console_logs_to(path: Path) -> None:
    """Send what Prefect's loggers would print to the terminal into `path` instead (the demo's
    summary is what a person reads; the runs' logs stay in the file and in the Prefect UI)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    to_file = logging.FileHandler(path, mode="w", encoding="utf-8")
    to_file.setFormatter(logging.Formatter("%(asctime)s | %(levelname)-7s | %(name)s - %(message)s"))
    loggers = [logging.getLogger(), *(lg for lg in logging.root.manager.loggerDict.values() if isinstance(lg, logging.Logger))]
    for logger in loggers:
        for handler in list(logger.handlers):
            if isinstance(handler, logging.StreamHandler) and not isinstance(handler, logging.FileHandler):
                logger.removeHandler(handler)
                logger.addHandler(to_file)


def _demo(args: argparse.Namespace) -> int:
    if not os.environ.get("PREFECT_API_URL"):  # a temporary server of the demo's own, in its folder:
        # two demos from two checkouts never share (or overwrite) blocks, nor touch the user's Prefect home
        home = (Path(args.dir) / "prefect-home").resolve()
        home.mkdir(parents=True, exist_ok=True)
        os.environ["PREFECT_HOME"] = str(home)
    import prefect.main  # noqa: F401 - reads the settings above and sets up Prefect's logging, redirected below

    from flows.ops.demo import print_summary, run_demo

    log = Path(args.dir) / "demo.log"
    _console_logs_to(log)
    started = time.perf_counter()
    print("flet-montrg demo: the whole pipeline on a simulated sensor floor", flush=True)
    print(f"  (the flow runs' logs go to {log})", flush=True)
    summary = asyncio.run(
        run_demo(folder=args.dir, reset=args.reset, source_url=args.source_url, target_url=args.target_url)
    )
    print_summary(summary)
    print(f"demo finished in {time.perf_counter() - started:.1f} s")
    return 0


def _doctor(args: argparse.Namespace) -> int:
    from flows.ops.doctor import diagnose

    report = asyncio.run(diagnose(args.pool, pause_unready=args.pause_unready, resume_ready=args.resume_ready, ephemeral=args.ephemeral))
    for finding in report.findings:
        print(finding.line())
    for change in report.schedule_changes:
        print(change)
    if report.blocking:
        print(f"montrg doctor: {len(report.blocking)} problem(s) would fail runs now: {', '.join(report.blocking)}", file=sys.stderr)
        return 1
    print("montrg doctor: no scheduled run lacks what it needs")
    return 0


def _pool_create(args: argparse.Namespace) -> int:
    from deployments.pool import run

    return run(args)


def _automations_apply(args: argparse.Namespace) -> int:

    from flows.ops.automations import apply

    applied = asyncio.run(apply(args.notify, Path(args.dir), args.sla_minutes, args.pending_minutes))
    for name in applied.created:
        print(f"created automation {name}")
    for name in applied.replaced:
        print(f"replaced automation {name}")
    if applied.block:
        print(f"notifications go through the block {applied.block}")
    return 0


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="montrg", description="flet-montrg: factory IoT temperature pipeline")
    p.add_argument("--debug", action="store_true", help="on an error, show the traceback too")
    sub = p.add_subparsers(dest="command", required=True)

    db = sub.add_parser("db", help="database schema").add_subparsers(dest="db_command", required=True)
    init = db.add_parser("init", help="create or upgrade the flet_montrg schema (idempotent)")
    init.add_argument("--block", required=True, help="database block name")
    init.set_defaults(func=_db_init)

    blocks = sub.add_parser("blocks", help="database blocks").add_subparsers(dest="blocks_command", required=True)
    create = blocks.add_parser("create", help="save an AsyncSqlAlchemyConnector block from a URL")
    create.add_argument("name", help="block name, e.g. pg-fdw-v1-iot")
    create.add_argument("url", help="postgresql://user:pass@host:5432/db, mysql://..., sqlite:///path; '-' reads stdin")
    create.add_argument("--no-overwrite", action="store_true", help="fail if the block exists")
    create.add_argument("--schema", help="this database's schema, if not MONTRG_SCHEMA (flet_montrg)")
    create.add_argument("--check", action=argparse.BooleanOptionalAction, default=True,
                        help="connect once before saving and report the server's version (default); --no-check saves without")
    create.set_defaults(func=_blocks_create)

    doctor = sub.add_parser("doctor", help="check blocks, tables, sensors, the pool and the deployments; print the fixes")
    doctor.add_argument("--pool", default="montrg-docker", help="the work pool to check besides the deployments' own")
    doctor.add_argument("--pause-unready", action="store_true", help="pause the schedules of deployments that lack something")
    doctor.add_argument("--resume-ready", action="store_true", help="switch on the paused schedules of deployments that lack nothing")
    doctor.add_argument("--ephemeral", action="store_true", help="without PREFECT_API_URL, check a temporary local server (it holds no deployment)")
    doctor.set_defaults(func=_doctor)

    from deployments.pool import add_arguments

    pool = sub.add_parser("pool", help="the work pool").add_subparsers(dest="pool_command", required=True)
    pool_create = pool.add_parser("create", help="create or update the work pool, its job defaults and queues (idempotent)")
    add_arguments(pool_create)
    pool_create.set_defaults(func=_pool_create)

    from flows.ops.automations import AUTOMATIONS_DIR

    automations = sub.add_parser("automations", help="Prefect automations").add_subparsers(dest="automations_command", required=True)
    apply = automations.add_parser("apply", help="create or replace the shipped automations (alerts, hourly SLA, failed runs, silent and stuck runs)")
    apply.add_argument("--notify", help="the notification block: <block-type-slug>/<name> (e.g. slack-webhook/plant-team) or a unique name")
    apply.add_argument("--sla-minutes", type=float, help="the hourly job's SLA (default: the file's 60 minutes)")
    apply.add_argument("--pending-minutes", type=float,
                       help="how long a run may stay Pending (taken, not started) before it is marked Crashed (default: the file's 15)")
    apply.add_argument("--dir", default=str(AUTOMATIONS_DIR), help="the folder of automation files")
    apply.set_defaults(func=_automations_apply)

    from flows.ops.alarms import add_arguments as add_alarm_arguments

    add_alarm_arguments(sub)

    from flows.ops.report import add_arguments as add_report_arguments

    add_report_arguments(sub)

    demo = sub.add_parser("demo", help="run the whole pipeline once on a simulated floor (SQLite files by default)")
    demo.add_argument("--dir", default="demo-data", help="folder for the demo databases (default demo-data)")
    demo.add_argument("--keep", dest="reset", action="store_false", help="keep what earlier demo runs wrote")
    demo.add_argument("--source-url", help="run on this IoT database instead (e.g. postgresql://...)")
    demo.add_argument("--target-url", help="run on this HQ database instead")
    demo.set_defaults(func=_demo, reset=True)
    return p


def _quiet_closed_loop(args: threading.ExceptHookArgs) -> None:
    """A driver's worker thread (aiosqlite) that answers after the command's event loop has closed
    (e.g. a failed connect) has nobody left to tell: the error was already reported, in one line."""
    if isinstance(args.exc_value, RuntimeError) and str(args.exc_value) == "Event loop is closed":
        return
    threading.__excepthook__(args)


def main(argv: list[str] | None = None) -> int:
    apply_prefect_defaults()  # before anything imports Prefect
    args = parser().parse_args(argv)
    import httpx
    from sqlalchemy.exc import SQLAlchemyError

    threading.excepthook = _quiet_closed_loop
    logging.getLogger("EventsWorker").setLevel(logging.ERROR)  # not "still processing items" at exit
    try:
        return args.func(args)
    except httpx.HTTPError as exc:  # the Prefect API, not a database
        url = os.environ.get("PREFECT_API_URL") or "a temporary local server"
        print(
            f"montrg: error: the Prefect API ({url}) does not answer: {type(exc).__name__}: {exc}; "
            "set PREFECT_API_URL to your server, or start one with: make server",
            file=sys.stderr,
        )
        return 2
    except Exception as exc:  # one line, what went wrong and where; the traceback with --debug
        if args.debug:
            raise
        message = getattr(exc, "orig", None) or exc  # the driver's own words, without the SQL echo
        text = str(message).strip() or type(message).__name__
        if not isinstance(exc, (ValueError, LookupError, RuntimeError, OSError, SQLAlchemyError)):
            text = f"{type(message).__name__}: {text}"  # not one of ours: the kind says more
        print(f"montrg: error: {' '.join(text.split())}", file=sys.stderr)
        return 2

