"""The demo, with short settings, on SQLite files and on PostgreSQL: its summary equals the data."""

from __future__ import annotations

from blocks import load_database
from flows.demo import SOURCE_BLOCK, TARGET_BLOCK, DemoSettings, run_demo
from tests.helpers import Db, query

SHORT = DemoSettings(locations=8, history_days=1, collect_seconds=2, interval_seconds=1)


async def count(block: str, table: str, where: str) -> int:
    d = Db(block, await load_database(block))
    try:
        return int((await query(d, f"SELECT COUNT(*) AS n FROM {d.table(table)} WHERE {where}"))["n"][0])
    finally:
        await d.db.dispose()


async def check(summary) -> None:
    steps = {s.name: s for s in summary.steps}
    assert list(steps) == ["seed", "sensor_collect", "temperature_raw_etl", "master_etl", "temperature_backfill", "temperature_etl"]
    # the last device hangs: 7 of 8 answer in each of the 2 cycles
    assert steps["sensor_collect"].rows == 7 * 2 and "DEMO-S008 (2 cycles)" in steps["sensor_collect"].detail
    history = int(steps["seed"].detail.split()[0].replace(",", ""))
    demo = "loc_id LIKE 'DEMO-L%'"
    raw = await count(SOURCE_BLOCK, "temperature_raw", demo)
    assert raw == history + steps["sensor_collect"].rows + steps["temperature_raw_etl"].rows
    assert await count(SOURCE_BLOCK, "temperature_raw_reject", "source LIKE 'device:montrg-demo%'") == summary.rejects.height == 5
    assert await count(TARGET_BLOCK, "alerts", demo) == summary.alerts.height > 0
    assert set(summary.alerts["loc_id"]) == {"DEMO-L001"}  # the location that runs hot
    assert await count(TARGET_BLOCK, "locations", demo) == 8
    assert await count(TARGET_BLOCK, "temperature", demo) >= steps["temperature_backfill"].rows > 0


async def test_demo_on_sqlite_twice(tmp_path):
    first = await run_demo(folder=str(tmp_path / "demo"), settings=SHORT)
    await check(first)
    second = await run_demo(folder=str(tmp_path / "demo"), settings=SHORT)  # resets the folder
    await check(second)
    assert [s.rows for s in first.steps if s.name != "seed"] == [s.rows for s in second.steps if s.name != "seed"]


async def test_demo_on_postgresql_twice(pg_url):
    urls = dict(source_url=await pg_url(), target_url=await pg_url())
    await check(await run_demo(settings=SHORT, **urls))
    await check(await run_demo(settings=SHORT, **urls))  # removes the demo's own rows first
