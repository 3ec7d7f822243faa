"""Credentials stay secret: a marker password appears in no log, artifact, exception or CLI output."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
from datetime import datetime

from sqlalchemy import MetaData, insert, text

from blocks import create_block, load_database
from flows import (
    master_etl,
    sensor_collect,
    store,
    temperature_backfill,
    temperature_etl,
    temperature_raw_backfill,
    temperature_raw_etl,
)
from flows.domain.windows import Window
from flows.store.schema import device_table, init_schema, sensors
from tests import scenario
from tests.helpers import unique

MARKER = "Sup3r-S3cret-MARKER-pw"  # PostgreSQL here trusts 127.0.0.1, so any password connects


async def marked_db(pg_url, role: str, init: bool = True):
    url = (await pg_url()).replace("postgresql+asyncpg://postgres@", f"postgresql://postgres:{MARKER}@")
    name = unique(f"t-{role}-")
    await create_block(name, url)
    db = await load_database(name)
    assert db.url.password == MARKER
    if init:
        async with db.engine.begin() as conn:
            await conn.run_sync(init_schema, db.schema)
    return name, db, url


async def test_no_flow_leaks_the_password(pg_url, caplog):
    caplog.set_level(logging.DEBUG)
    iot_block, iot, iot_url = await marked_db(pg_url, "iot")
    hq_block, hq, _ = await marked_db(pg_url, "hq")
    bare_block, bare, _ = await marked_db(pg_url, "bare", init=False)
    dev = device_table("dbo.temperature", MetaData())
    async with iot.engine.begin() as conn:
        await conn.execute(text("CREATE SCHEMA dbo"))
        await conn.run_sync(dev.metadata.create_all)
        await conn.execute(insert(dev).values(sensor_id="S1", capture_dt=datetime(2024, 1, 31, 5), t1="x", upload_dt=datetime(2024, 1, 31, 6)))
        await conn.execute(insert(sensors).values(sensor_id="S1", loc_id="L1", host="127.0.0.1", port=1, device_id=1,
                                                  registers=json.dumps({"temperature": {"address": 1}}), is_active=True))
    await store.insert_raw(iot, scenario.rows())
    io = dict(source_block=iot_block, target_block=hq_block)
    errors: list[str] = []
    runs = [
        temperature_backfill(start="2024-01-31", end="2024-01-31", **io, return_state=True),
        temperature_etl(hour=datetime(2024, 1, 31, 5), **io, return_state=True),
        master_etl(**io, return_state=True),
        temperature_raw_etl(device_block=iot_block, device_table="dbo.temperature", iot_block=iot_block, return_state=True),
        temperature_raw_backfill(start="2024-01-31", end="2024-01-31", device_block=iot_block, device_table="dbo.temperature",
                                 source_block=iot_block, return_state=True),
        sensor_collect(interval_seconds=0.5, duration_seconds=0.5, timeout_seconds=0.2, iot_block=iot_block,
                       return_state=True),  # fails: none answer
        temperature_etl(hour=datetime(2024, 1, 31, 5), source_block=iot_block, target_block=bare_block,
                        return_state=True),  # fails: no tables
    ]
    run_ids = []
    for run in runs:
        state = await run
        run_ids.append(state.state_details.flow_run_id)
        if state.is_failed():
            exc = await state.result(raise_on_failure=False)
            errors.append(f"{type(exc).__name__}: {exc!s} {exc!r} {state.message}")
    try:
        await store.read_raw(bare, Window(datetime(2024, 1, 1), datetime(2024, 1, 2)))  # fails inside ADBC
    except Exception as exc:  # noqa: BLE001 - every failure message is checked
        errors.append(f"{type(exc).__name__}: {exc!s} {exc!r}")
    assert len(errors) == 3, errors

    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId, LogFilter, LogFilterFlowRunId
    from prefect.logging.handlers import APILogHandler

    await APILogHandler.aflush()  # logs reach the server in the background: all of them, now
    logs, artifacts = [], []
    async with get_client() as client:  # this test's runs only, every page (the API returns 200 at most)
        while page := await client.read_logs(log_filter=LogFilter(flow_run_id=LogFilterFlowRunId(any_=run_ids)), limit=200, offset=len(logs)):
            logs += page
        artifacts = await client.read_artifacts(artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=run_ids)))
    assert {log.flow_run_id for log in logs} == set(run_ids)  # every run's logs were read
    exposed = {
        "exceptions": "\n".join(errors),
        "local log records": "\n".join(f"{r.getMessage()} {r.exc_text or ''}" for r in caplog.records),
        "server logs": "\n".join(log.message for log in logs),
        "artifacts": "\n".join(json.dumps(a.data, default=str) + str(a.description) for a in artifacts),
    }
    assert all(exposed.values())
    for where, content in exposed.items():
        assert MARKER not in content, f"the password leaked into {where}"
    for db in (iot, hq, bare):
        await db.dispose()


def test_cli_never_prints_the_password(prefect_env):
    url = f"postgresql://postgres:{MARKER}@127.0.0.1:5432/montrg_no_such_db"
    name = unique("t-cli-")
    outputs = [
        subprocess.run([sys.executable, "-m", "flows", *args], env=prefect_env, capture_output=True, text=True, timeout=120)
        for args in (["blocks", "create", name, url], ["blocks", "create", name, url, "--no-check"], ["db", "init", "--block", name])
    ]
    assert [done.returncode for done in outputs] == [2, 0, 2]  # the database does not exist: the check, then db init say so
    for done in outputs:
        assert MARKER not in done.stdout + done.stderr
