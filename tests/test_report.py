"""`montrg report`: the pictures are drawn from the database. Checked through the data behind each
picture (the CSV written beside it) against the HQ table read with SQL, before and after a change
of the source's readings; the page shows both pictures."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import polars as pl
import pytest
from sqlalchemy import insert, text

from flows import store, temperature_backfill
from flows.ops.cli import main
from flows.settings import plant_now
from flows.store.schema import thresholds
from tests.helpers import query, unique
from tests.test_alerts import set_locations


@pytest.fixture
async def pg_pair(db_pair):
    return await db_pair("postgresql->postgresql")


def readings(loc: str, start, hours: int, minutes: range, temperature: float) -> pl.DataFrame:
    rows = [(loc, start + timedelta(hours=h, minutes=m), temperature + h % 3, 50.0, 22.0) for h in range(hours) for m in minutes]
    return pl.DataFrame(rows, schema=["loc_id", "capture_dt", "temperature", "humidity", "pcv_temperature"], orient="row")


async def test_the_report_draws_the_database_and_follows_its_changes(pg_pair, tmp_path):
    source, target = pg_pair
    p = unique("RPT")
    end = plant_now().replace(minute=0, second=0, microsecond=0)
    start = end - timedelta(hours=48)
    await set_locations(target, [(f"{p}-FULL", True, 300), (f"{p}-HALF", True, 300)])
    async with target.db.engine.begin() as conn:
        await conn.execute(insert(thresholds), [
            {"threshold_id": 1, "threshold_type": "temperature", "level": "yellow", "min_value": -50.0, "max_value": 30.0, "loc_id": None, "is_active": True},
            {"threshold_id": 2, "threshold_type": "temperature", "level": "red", "min_value": -50.0, "max_value": 35.0, "loc_id": None, "is_active": True},
        ])
    await store.insert_raw(source.db, pl.concat([readings(f"{p}-FULL", start, 48, range(0, 60, 5), 20.0),
                                                 readings(f"{p}-HALF", start, 48, range(0, 30, 5), 31.0)]))
    blocks = dict(source_block=source.block, target_block=target.block)
    await temperature_backfill(start=start, end=end, **blocks)

    out = tmp_path / "report"
    assert await asyncio.to_thread(main, ["report", "--hours", "24", "--out", str(out), "--block", target.block]) == 0

    async def table_coverage() -> list[tuple]:
        df = await query(target, f"SELECT loc_id, ymd, hh, coverage FROM {target.table('temperature')} "
                                 "WHERE ymd || hh >= :s ORDER BY loc_id, ymd, hh", s=f"{end - timedelta(hours=24):%Y%m%d%H}")
        return df.rows()

    def grid_coverage() -> list[tuple]:
        grid = pl.read_csv(out / "coverage-grid.csv", try_parse_dates=True)
        return sorted((r["loc_id"], f"{r['hour']:%Y%m%d}", f"{r['hour']:%H}", r["coverage"]) for r in grid.iter_rows(named=True))

    assert grid_coverage() == await table_coverage()
    assert {r[3] for r in grid_coverage() if r[0] == f"{p}-HALF"} == {0.5}
    charted = pl.read_csv(out / "limits.csv", try_parse_dates=True)
    hot = await query(target, f"SELECT MAX(temperature_max) FROM {target.table('temperature')} WHERE loc_id = :l", l=f"{p}-HALF")
    assert charted.filter(pl.col("loc_id") == f"{p}-HALF")["max"].max() == hot.item() and charted["loc_id"].n_unique() == 2
    assert charted.height == 2 * 48
    for png in ("coverage-grid.png", "limits.png"):
        assert (out / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    page = (out / "index.html").read_text()
    assert 'src="coverage-grid.png"' in page and 'src="limits.png"' in page and f"{p}-HALF" in page

    # HALF's last hour loses its readings at the source: the next report shows a gap there
    async with source.db.engine.begin() as conn:
        await conn.execute(text(f"DELETE FROM {source.table('temperature_raw')} WHERE loc_id = :l AND capture_dt >= :h"),
                           {"l": f"{p}-HALF", "h": end - timedelta(hours=1)})
    await temperature_backfill(start=end - timedelta(hours=1), end=end, **blocks)
    assert await asyncio.to_thread(main, ["report", "--hours", "24", "--out", str(out), "--block", target.block]) == 0
    half = [r for r in grid_coverage() if r[0] == f"{p}-HALF"]
    assert half[-1][3] == 0.0 and {r[3] for r in half[:-1]} == {0.5}
