"""The demo, with short settings, on SQLite files and on PostgreSQL: what it wrote into the
databases, checked against the databases' own GROUP BY, and its summary against the tables."""

from __future__ import annotations

from datetime import datetime, timedelta

import polars as pl

from blocks import load_database
from flows.ops.demo import SOURCE_BLOCK, TARGET_BLOCK, run_demo
from flows.ops.seed import FloorSettings
from tests.helpers import Db, assert_matches_reference, query, reference, target_rows

SHORT = FloorSettings(locations=8, history_days=1, collect_seconds=2, interval_seconds=1)
DEMO = "loc_id LIKE 'DEMO-L%'"


async def check(summary) -> None:
    assert [s.name for s in summary.steps] == [
        "seed", "sensor_collect", "temperature_raw_etl", "master_etl", "temperature_backfill", "temperature_etl"
    ]
    iot, hq = Db(SOURCE_BLOCK, await load_database(SOURCE_BLOCK)), Db(TARGET_BLOCK, await load_database(TARGET_BLOCK))
    try:
        # every hour the demo aggregated equals the source's own GROUP BY of its raw rows
        written = await target_rows(hq, DEMO)
        hours = sorted({datetime.strptime(f"{y}{h}", "%Y%m%d%H") for y, h in written.select("ymd", "hh").rows()})
        expected = await reference(iot, hours[0], hours[-1] + timedelta(hours=1))
        assert_matches_reference(written, expected.filter(expected["loc_id"].str.starts_with("DEMO-L")))
        # the collection: 7 devices answered in both cycles, the hanging DEMO-L008 never
        collected = await query(iot, f"SELECT loc_id, COUNT(*) AS n FROM {iot.table('temperature_raw')} "
                                     f"WHERE {DEMO} AND capture_dt >= :h GROUP BY loc_id", h=hours[-1] + timedelta(hours=1))
        assert dict(collected.rows()) == {f"DEMO-L00{i}": 2 for i in range(1, 8)}
        # the gateway's malformed rows are kept aside with their reasons, once each
        rejects = await query(iot, f"SELECT reason FROM {iot.table('temperature_raw_reject')} WHERE source LIKE 'device:montrg-demo%'")
        assert rejects.height == 5 == summary.rejects.height and all(rejects["reason"])
        # only the location that runs hot raised threshold alerts, and only the silent one (no gateway
        # rows in the last full hour) a coverage alert; the summary shows one line for each
        alerts = await query(hq, f"SELECT DISTINCT loc_id, measure FROM {hq.table('alerts')} WHERE {DEMO} ORDER BY loc_id")
        assert alerts.rows() == [("DEMO-L001", "temperature"), ("DEMO-L008", "coverage")]
        last = hours[-1]  # the last full hour: DEMO-L001's level follows from its max (demo limits: yellow 30, red 35)
        hot = await query(hq, f"SELECT temperature_max FROM {hq.table('temperature')} WHERE loc_id = 'DEMO-L001' "
                              f"AND ymd = '{last:%Y%m%d}' AND hh = '{last:%H}'")
        hot_level = "red" if hot["temperature_max"][0] > 35 else "yellow" if hot["temperature_max"][0] > 30 else None
        # the summary shows the open alarms: one per location and measure (an episode, however many
        # hours it lasts); DEMO-L001's is open while its last hour is hot, the silent DEMO-L008's at red
        assert summary.alerts.select("loc_id", "measure", "state").rows() == [
            *([("DEMO-L001", "temperature", "open")] if hot_level else []), ("DEMO-L008", "coverage", "open"),
        ]
        assert summary.alerts.filter(pl.col("loc_id") == "DEMO-L008")["peak_level"].to_list() == ["red"]
        locations = await query(hq, f"SELECT COUNT(*) AS n FROM {hq.table('locations')} WHERE {DEMO}")
        assert locations["n"][0] == 8
        # the report folder: both pictures, the data each was drawn from, and the page linking them;
        # the silent DEMO-L008 (the only red alarm) is charted first and its last hour has no coverage
        folder = summary.report.folder
        assert {p.name for p in folder.iterdir()} >= {"index.html", "coverage-grid.png", "coverage-grid.csv", "limits.png", "limits.csv"}
        assert all((folder / f).read_bytes().startswith(b"\x89PNG") for f in ("coverage-grid.png", "limits.png"))
        assert summary.report.charted[0] == "DEMO-L008" and summary.report.locations == 8
        grid = pl.read_csv(folder / "coverage-grid.csv", try_parse_dates=True)
        assert grid.filter((pl.col("loc_id") == "DEMO-L008") & (pl.col("hour") == last))["coverage"].to_list() == [0.0]
    finally:
        await iot.db.dispose()
        await hq.db.dispose()


async def test_demo_on_sqlite_twice(tmp_path):
    await check(await run_demo(folder=str(tmp_path / "demo"), settings=SHORT))
    await check(await run_demo(folder=str(tmp_path / "demo"), settings=SHORT))  # resets the folder


async def test_demo_on_postgresql_twice(pg_url):
    urls = dict(source_url=await pg_url(), target_url=await pg_url())
    await check(await run_demo(settings=SHORT, **urls))
    await check(await run_demo(settings=SHORT, **urls))  # removes the demo's own rows first
