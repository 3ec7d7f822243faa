"""What the benchmarks share: the PostgreSQL server, fresh databases with blocks, peak memory."""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

PG = os.environ.get("MONTRG_BENCH_PG", "postgresql://postgres@127.0.0.1:5432")
ROOT = Path(__file__).resolve().parents[1]


def timed(argv: list[str], env: dict[str, str] | None = None, succeeded: str | None = None) -> tuple[float, str]:
    """Run `argv` as a fresh process, timed from spawn to exit (what a user pays); returns the
    seconds and its stdout. Raises with the end of its output when it fails, or when `succeeded`
    is given and its output lacks it."""
    started = time.perf_counter()
    done = subprocess.run(argv, env=env, capture_output=True, text=True, cwd=ROOT)
    seconds = time.perf_counter() - started
    output = done.stdout + done.stderr
    if done.returncode != 0 or (succeeded is not None and succeeded not in output):
        raise RuntimeError(f"{' '.join(argv[:5])} did not succeed:\n{output[-3000:]}")
    return seconds, done.stdout


def json_child(script: str, args: list[str], env: dict[str, str] | None = None) -> dict:
    """Run `script` with `args` in a fresh process (timed); the JSON it printed last, plus `whole`:
    the process's wall time from spawn to exit."""
    whole, stdout = timed([sys.executable, script, *args], env)
    return {**json.loads(stdout.strip().splitlines()[-1]), "whole": whole}


async def create_databases(names: list[str], fresh: bool = True) -> None:
    """Create `names` on the bench server; `fresh` drops them first, else existing ones are kept."""
    from sqlalchemy import text
    from sqlalchemy.ext.asyncio import create_async_engine

    admin = create_async_engine(f"{PG}/postgres".replace("postgresql://", "postgresql+asyncpg://"), isolation_level="AUTOCOMMIT")
    async with admin.connect() as conn:
        have = set((await conn.execute(text("SELECT datname FROM pg_database"))).scalars())
        for name in names:
            if fresh and name in have:
                await conn.execute(text(f"DROP DATABASE {name} WITH (FORCE)"))
            if fresh or name not in have:
                await conn.execute(text(f"CREATE DATABASE {name}"))
    await admin.dispose()


async def init_block(block: str, database: str):
    """Save block `block` for `database` on the bench server and create the schema; an open Database."""
    from blocks import create_block, load_database
    from flows.store.schema import init_schema

    await create_block(block, f"{PG}/{database}")
    db = await load_database(block)
    async with db.engine.begin() as conn:
        await conn.run_sync(init_schema, db.schema)
    return db


def peak_rss_mb() -> float:
    """This process's peak RSS (VmHWM: unlike ru_maxrss, not inherited from a parent at fork)."""
    status = Path("/proc/self/status")
    if status.exists():
        for line in status.read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def start_server(env: dict[str, str]) -> subprocess.Popen | None:
    """A Prefect server for the benchmark's flow runs (kept running, so runs are timed on a running
    server, as in production); None when PREFECT_API_URL already names one. Updates `env`."""
    if env.get("PREFECT_API_URL"):
        return None
    import socket
    import urllib.request

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    home = Path(__file__).resolve().parents[1] / "bench-data" / "prefect-home"
    home.mkdir(parents=True, exist_ok=True)
    env.update(PREFECT_HOME=str(home), PREFECT_API_URL=f"http://127.0.0.1:{port}/api")
    server = subprocess.Popen(
        [str(Path(sys.executable).with_name("prefect")), "server", "start", "--host", "127.0.0.1", "--port", str(port)],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    for _ in range(120):
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/api/health", timeout=1)
            return server
        except OSError:
            time.sleep(1)
    server.kill()
    raise RuntimeError("the Prefect server did not start")
