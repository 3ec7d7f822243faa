"""Benchmark: a one-day backfill of 200 locations at 10 s (~1.7M raw rows), PostgreSQL -> PostgreSQL.

    python bench/backfill_day.py seed   # fresh databases montrg_bench_iot / montrg_bench_hq + rows
    python bench/backfill_day.py run    # temperature_backfill through the flow, in a fresh process

`make bench` runs both. Prints wall time, rows/s and the run process's peak RSS. Uses the Prefect
API in PREFECT_API_URL, or a temporary local server when unset (its start-up is not timed).
"""

from __future__ import annotations

import asyncio
import os
import statistics
import sys
import time
from datetime import datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import create_databases, init_block, peak_rss_mb  # noqa: E402

DAY = datetime(2024, 1, 15)
LOCATIONS = 200
BLOCKS = {"iot": "montrg-bench-iot", "hq": "montrg-bench-hq"}


async def seed() -> None:
    from sqlalchemy import text

    from blocks import open_database
    from flows.core import simulate
    from flows.core.io import sql

    await create_databases([f"montrg_bench_{role}" for role in BLOCKS])
    for role, block in BLOCKS.items():
        await (await init_block(block, f"montrg_bench_{role}")).dispose()
    # the day, plus an hour either side that the backfill must leave alone
    raw = simulate.readings(LOCATIONS, DAY - timedelta(hours=1), DAY + timedelta(days=1, hours=1))
    started = time.perf_counter()
    async with open_database(BLOCKS["iot"]) as db:
        n = await sql.insert_raw(db, raw)
        async with db.engine.begin() as conn:
            await conn.execute(text("ANALYZE flet_montrg.temperature_raw"))
    print(f"seeded {n:,} raw rows in {time.perf_counter() - started:.1f} s")


async def run(repeats: int = 3) -> None:
    from sqlalchemy import text

    from blocks import open_database
    from flows import temperature_backfill

    rss_before = peak_rss_mb()
    async with open_database(BLOCKS["hq"]) as hq, hq.engine.begin() as conn:
        await conn.execute(text("TRUNCATE flet_montrg.temperature"))
    times, reports = [], []
    for _ in range(repeats):
        started = time.perf_counter()
        reports.append(
            await temperature_backfill(
                start=DAY.date(), end=DAY.date(), source_block=BLOCKS["iot"], target_block=BLOCKS["hq"]
            )
        )
        times.append(time.perf_counter() - started)
    rows = reports[0].totals["raw_rows"]
    print(f"\none-day backfill, {LOCATIONS} locations at 10 s, PostgreSQL -> PostgreSQL, through the flow")
    print(f"{'run':<22}{'wall s':>8}{'raw rows/s':>14}{'location-hours':>16}")
    labels = ["1: insert"] + [f"{i + 1}: rerun (no change)" for i in range(1, repeats)]
    for label, t, r in zip(labels, times, reports):
        print(f"{label:<22}{t:>8.2f}{rows / t:>14,.0f}{r.totals['location_hours']:>16,}")
    print(f"median of {repeats}: {statistics.median(times):.2f} s for {rows:,} raw rows")
    print(f"peak RSS of this process: {peak_rss_mb():.0f} MB (after imports, before the runs: {rss_before:.0f} MB)")


if __name__ == "__main__":
    from flows.core.settings import apply_prefect_defaults

    apply_prefect_defaults()
    os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")  # the table, not every task's log line
    command = sys.argv[1] if len(sys.argv) > 1 else ""
    if command not in ("seed", "run"):
        sys.exit(__doc__)
    asyncio.run(seed() if command == "seed" else run())
