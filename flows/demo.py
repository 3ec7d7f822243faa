"""`montrg demo`: the pipeline once, end to end, on local SQLite databases.

Creates an IoT and an HQ database under a folder, their blocks (montrg-demo-iot, montrg-demo-hq),
the schema, two days of readings of 20 locations every 10 s, then runs temperature_backfill over
those days and temperature_etl for the last hour, and prints what happened.
"""

from __future__ import annotations

import shutil
import time
from datetime import timedelta
from pathlib import Path

import polars as pl

from blocks import create_block, open_database
from flows.core import simulate
from flows.core.io import sql
from flows.core.schema import init_schema
from flows.core.settings import plant_now

SOURCE_BLOCK = "montrg-demo-iot"
TARGET_BLOCK = "montrg-demo-hq"
LOCATIONS = 20
DAYS = 2


async def run_demo(folder: str = "demo-data", reset: bool = True) -> int:
    from flows import temperature_backfill, temperature_etl

    root = Path(folder).resolve()
    if reset and root.exists():
        shutil.rmtree(root)
    root.mkdir(parents=True, exist_ok=True)
    lines: list[str] = []
    started = time.perf_counter()

    for block, file in ((SOURCE_BLOCK, "iot.db"), (TARGET_BLOCK, "hq.db")):
        await create_block(block, f"sqlite:///{root / file}")
        async with open_database(block) as db:
            async with db.engine.begin() as conn:
                await conn.run_sync(init_schema, db.schema)

    now = plant_now()
    first, last = simulate.hours_before(now, 24 * DAYS)
    raw = simulate.readings(LOCATIONS, first, last)
    t0 = time.perf_counter()
    async with open_database(SOURCE_BLOCK) as iot:
        inserted = await sql.insert_raw(iot, raw)
    lines.append(
        f"seeded     {inserted:>9,} raw readings ({LOCATIONS} locations, every 10 s, "
        f"{first:%Y-%m-%d %H:%M} .. {last:%Y-%m-%d %H:%M}) in {time.perf_counter() - t0:.1f} s"
    )

    t0 = time.perf_counter()
    backfill = await temperature_backfill(
        start=first.date(), end=(last - timedelta(hours=1)).date(),
        source_block=SOURCE_BLOCK, target_block=TARGET_BLOCK,
    )
    totals = backfill.totals
    lines.append(
        f"backfill   {totals['raw_rows']:>9,} raw rows -> {totals['groups']:,} location-hours "
        f"({totals['inserted']:,} new) over {backfill.window} in {time.perf_counter() - t0:.1f} s"
    )
    t0 = time.perf_counter()
    hourly = await temperature_etl(source_block=SOURCE_BLOCK, target_block=TARGET_BLOCK)
    totals = hourly.totals
    lines.append(
        f"hourly etl {totals['raw_rows']:>9,} raw rows -> {totals['groups']:,} location-hours "
        f"({totals['updated']:,} changed, {totals['unchanged']:,} unchanged) over {hourly.window} "
        f"in {time.perf_counter() - t0:.1f} s"
    )

    async with open_database(TARGET_BLOCK) as hq:
        recent = await sql.read_hourly(hq, _last_hours(last, 3))
    table = (
        recent.filter(pl.col("loc_id").is_in(recent["loc_id"].unique().sort().head(5).implode()))
        .select("loc_id", "ymd", "hh", "temperature_max", "temperature_avg", "humidity_avg", "sample_count")
        .sort("loc_id", "ymd", "hh")
    )
    print("\n=== flet-montrg demo ===")
    print(*lines, sep="\n")
    print(f"\nlast 3 hours, first 5 locations (HQ database {root / 'hq.db'}):")
    with pl.Config(tbl_rows=20, tbl_hide_dataframe_shape=True, tbl_hide_column_data_types=True):
        print(table)
    print(f"\ndone in {time.perf_counter() - started:.1f} s; databases in {root}")
    return 0


def _last_hours(end, hours: int):
    from flows.core.windows import Window

    return Window(end - timedelta(hours=hours), end)
