"""Test helpers: databases with blocks, and references computed by SQL in the database itself."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import httpx
import polars as pl
from sqlalchemy import text

from blocks import create_block, load_database
from deployments.server import server_settings
from flows.store import Database
from flows.store.schema import init_schema

MEASURES = ("temperature", "humidity", "pcv_temperature")

# ymd and hh of capture_dt, as each dialect's own SQL writes them (independent of the project)
_YMD_HH = {
    "postgresql": ("to_char(capture_dt, 'YYYYMMDD')", "to_char(capture_dt, 'HH24')"),
    "mysql": ("DATE_FORMAT(capture_dt, '%Y%m%d')", "DATE_FORMAT(capture_dt, '%H')"),
    "sqlite": ("strftime('%Y%m%d', capture_dt)", "strftime('%H', capture_dt)"),
}


def unique(prefix: str) -> str:
    """A name no other test uses (lowercase, digits and dashes/underscores as given)."""
    return f"{prefix}{uuid.uuid4().hex[:10]}"


@dataclass
class Db:
    """A test database: its block name and an open Database for seeding and checking."""

    block: str
    db: Database

    def table(self, name: str) -> str:
        return f"{self.db.schema}.{name}" if self.db.schema else name


async def make_db(url: str, block: str, init: bool = True) -> Db:
    await create_block(block, url)
    db = await load_database(block)
    if init:
        async with db.engine.begin() as conn:
            await conn.run_sync(init_schema, db.schema)
    return Db(block, db)


async def query(d: Db, sql: str, **params) -> pl.DataFrame:
    async with d.db.engine.connect() as conn:
        result = await conn.execute(text(sql), params)
        return pl.DataFrame(result.all(), schema=list(result.keys()), orient="row", infer_schema_length=None)


async def reference(source: Db, start: datetime, end: datetime) -> pl.DataFrame:
    """The seed's aggregation, by GROUP BY in the source database itself."""
    ymd, hh = _YMD_HH[source.db.dialect]
    stats = ", ".join(
        f"MAX({m}) AS {m}_max, AVG({m}) AS {m}_avg, MIN({m}) AS {m}_min, COUNT({m}) AS {m}_count"
        for m in MEASURES
    )
    df = await query(
        source,
        f"SELECT loc_id, {ymd} AS ymd, {hh} AS hh, {stats}, COUNT(*) AS sample_count "
        f"FROM {source.table('temperature_raw')} WHERE capture_dt >= :start AND capture_dt < :end "
        f"GROUP BY loc_id, {ymd}, {hh}",
        start=start, end=end,
    )
    return normalise(df)


async def target_rows(target: Db, where: str = "1=1") -> pl.DataFrame:
    cols = ", ".join(
        ["loc_id", "ymd", "hh"]
        + [f"{m}_{s}" for m in MEASURES for s in ("max", "avg", "min", "count")]
        + ["sample_count"]
    )
    return normalise(await query(target, f"SELECT {cols} FROM {target.table('temperature')} WHERE {where}"))


def normalise(df: pl.DataFrame) -> pl.DataFrame:
    return df.with_columns(
        *(pl.col(c).cast(pl.Float64) for c in df.columns if c.endswith(("_max", "_avg", "_min"))),
        *(pl.col(c).cast(pl.Int64) for c in df.columns if c.endswith("count")),
        *(pl.col(c).cast(pl.String) for c in ("loc_id", "ymd", "hh")),
    ).sort("loc_id", "ymd", "hh")


def assert_matches_reference(actual: pl.DataFrame, expected: pl.DataFrame) -> None:
    """Same keys; max, min and counts exact; averages within the 4-decimal rounding."""
    keys = ["loc_id", "ymd", "hh"]
    assert actual.select(keys).equals(expected.select(keys)), (
        f"keys differ:\nmissing {expected.select(keys).join(actual.select(keys), on=keys, how='anti')}\n"
        f"extra {actual.select(keys).join(expected.select(keys), on=keys, how='anti')}"
    )
    for col in expected.columns:
        if col in keys:
            continue
        a, e = actual[col], expected[col]
        assert (a.is_null() == e.is_null()).all(), f"{col}: NULLs differ"
        if col.endswith("_avg"):
            diff = (a - e).abs().max()
            assert diff is None or diff <= 5.001e-5, f"{col}: max difference {diff}"
        else:
            assert a.equals(e), f"{col} differs"


async def until(check, timeout: float, what: str):
    """Poll `check()` (an async callable) every second until it returns something true; return it.
    For conditions on a server's side, not for ordering events."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = await check()
        if found:
            return found
        await asyncio.sleep(1)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")


class PrefectServer:
    """A full `prefect server start` (every service: triggers, actions, late runs, the repossessor)
    on a free loopback port, with a home of its own and this project's server settings
    (deployments/server.env); `env` points a process at it. It can be SIGKILLed and started again
    on the same home and port, as a crashed server is restarted."""

    def __init__(self) -> None:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.home = tempfile.mkdtemp(prefix="montrg-full-server-")
        self.api = f"http://127.0.0.1:{self.port}/api"
        self.env = {**os.environ, **server_settings(), "PREFECT_HOME": self.home, "PREFECT_API_URL": self.api,
                    "PREFECT_SERVER_ANALYTICS_ENABLED": "false"}
        self.process = None

    def start(self, timeout: float = 120) -> None:
        prefect = str(Path(sys.executable).with_name("prefect"))
        self.process = subprocess.Popen([prefect, "server", "start", "--host", "127.0.0.1", "--port", str(self.port)],
                                        env=self.env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + timeout
        while True:
            try:
                if httpx.get(f"{self.api}/health", timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline and self.process.poll() is None, "prefect server did not start"
            time.sleep(0.5)

    def kill(self) -> None:
        """SIGKILL: no shutdown of its services, nothing flushed."""
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(30)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            self.process.wait(60)
