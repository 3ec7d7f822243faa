"""What the benchmarks share: the PostgreSQL server, fresh databases with blocks, peak memory."""

from __future__ import annotations

import os
import resource
from pathlib import Path

PG = os.environ.get("MONTRG_BENCH_PG", "postgresql://postgres@127.0.0.1:5432")


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
    from flows.core.schema import init_schema

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
