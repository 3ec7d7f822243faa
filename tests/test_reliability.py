"""Faults and overlaps on real PostgreSQL (and MariaDB): nothing lost, doubled or half-written.

Each test asserts exact table contents after recovery, against SQL GROUP BY in the source.
"""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
import time
from datetime import datetime, timedelta

import pytest
from sqlalchemy import text

from flows import store, temperature_backfill, temperature_etl
from flows.ops.simulate import readings
from flows.settings import plant_now
from tests import scenario
from tests.helpers import assert_matches_reference, query, reference, target_rows

pytestmark = pytest.mark.slow


@pytest.fixture(params=["postgresql->postgresql", "postgresql->mariadb"])
async def pair(request, db_pair):
    return await db_pair(request.param)

@pytest.fixture
async def pg_pair(db_pair):
    return await db_pair("postgresql->postgresql")

async def execute(d, *statements: str) -> None:
    async with d.db.engine.begin() as conn:
        for statement in statements:
            await conn.execute(text(statement))


async def test_target_connection_killed_mid_chunk_is_retried_with_exact_results(pg_pair):
    source, target = pg_pair
    await store.insert_raw(source.db, scenario.rows())
    t = target.table("temperature")
    # the first write of 2024-02-01's chunk kills its own connection, mid-transaction, once
    await execute(
        target,
        "CREATE SEQUENCE kill_once",
        "CREATE FUNCTION kill_me() RETURNS trigger AS $$ BEGIN "
        "IF NEW.ymd = '20240201' AND nextval('kill_once') = 1 THEN PERFORM pg_terminate_backend(pg_backend_pid()); END IF; "
        "RETURN NEW; END $$ LANGUAGE plpgsql",
        f"CREATE TRIGGER kill_me BEFORE INSERT ON {t} FOR EACH ROW EXECUTE FUNCTION kill_me()",
    )

    report = await temperature_backfill(start="2024-01-31", end="2024-02-01", source_block=source.block, target_block=target.block)

    assert (await query(target, "SELECT last_value FROM kill_once"))["last_value"][0] > 1  # it did fire, then retried
    assert_matches_reference(await target_rows(target), await reference(source, scenario.RANGE_START, scenario.RANGE_END))
    assert report.totals["inserted"] == (await target_rows(target)).height


async def test_source_down_fails_clearly_then_the_next_run_catches_up(pg_pair, pg_url):
    source, target = pg_pair
    last_full = plant_now().replace(minute=0, second=0, microsecond=0) - timedelta(hours=1)
    await store.insert_raw(source.db, readings(3, last_full - timedelta(hours=8), last_full + timedelta(hours=1), every_seconds=600))
    watermark = last_full - timedelta(hours=5)  # the last good run; the runs since failed
    await store.extend_watermark(target.db, "temperature-etl", watermark, watermark, plant_now(), create=True)
    good_url = source.db.url.render_as_string(hide_password=False)
    from blocks import create_block

    await create_block(source.block, "postgresql://postgres@127.0.0.1:1/nowhere")  # the IoT server is down
    with pytest.raises(ConnectionError, match=rf"block '{source.block}' .* does not answer"):
        await temperature_etl(source_block=source.block, target_block=target.block)
    assert await store.get_watermark(target.db, "temperature-etl") == watermark
    assert (await target_rows(target)).is_empty()

    await create_block(source.block, good_url)  # it is back
    report = await temperature_etl(source_block=source.block, target_block=target.block)

    end = last_full + timedelta(hours=1)
    assert report.window == f"[{watermark:%Y-%m-%d %H:%M}, {end:%Y-%m-%d %H:%M})"
    assert_matches_reference(await target_rows(target), await reference(source, watermark, end))
    assert await store.get_watermark(target.db, "temperature-etl") == end


async def test_worker_killed_mid_run_leaves_whole_chunks_and_a_rerun_completes(pg_pair, prefect_env):
    source, target = pg_pair
    await store.insert_raw(source.db, scenario.rows())
    t = target.table("temperature")
    await execute(
        target,  # the second chunk's write hangs, as a slow or stuck write would
        "CREATE FUNCTION stall() RETURNS trigger AS $$ BEGIN "
        "IF NEW.ymd = '20240201' THEN PERFORM pg_sleep(60); END IF; RETURN NEW; END $$ LANGUAGE plpgsql",
        f"CREATE TRIGGER stall BEFORE INSERT ON {t} FOR EACH ROW EXECUTE FUNCTION stall()",
    )
    code = (
        "import asyncio\nfrom flows import temperature_backfill\n"
        f"asyncio.run(temperature_backfill(start='2024-01-31', end='2024-02-01', source_block='{source.block}', target_block='{target.block}'))"
    )
    worker = subprocess.Popen([sys.executable, "-c", code], env=prefect_env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:  # wait until the second chunk is stuck in its write
            stuck = await query(target, "SELECT COUNT(*) AS n FROM pg_stat_activity WHERE query LIKE '%INSERT INTO%' AND wait_event = 'PgSleep'")
            if stuck["n"][0]:
                break
            await asyncio.sleep(0.3)
        else:
            pytest.fail("the backfill never reached its second chunk")
        worker.send_signal(signal.SIGKILL)  # the worker dies mid-transaction
        worker.wait(10)
    finally:
        if worker.poll() is None:
            worker.kill()
    await execute(target, "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE wait_event = 'PgSleep'")

    days = await query(target, f"SELECT ymd, COUNT(*) AS n FROM {t} GROUP BY ymd ORDER BY ymd")
    jan31 = await reference(source, datetime(2024, 1, 31), datetime(2024, 2, 1))
    assert days.rows() == [("20240131", jan31.height)]  # chunk one whole, chunk two not at all

    await execute(target, f"DROP TRIGGER stall ON {t}")
    await temperature_backfill(start="2024-01-31", end="2024-02-01", source_block=source.block, target_block=target.block)
    assert_matches_reference(await target_rows(target), await reference(source, scenario.RANGE_START, scenario.RANGE_END))


async def test_overlapping_runs_end_like_a_single_run(pair):
    source, target = pair
    await store.insert_raw(source.db, scenario.rows())
    args = dict(source_block=source.block, target_block=target.block)

    results = await asyncio.gather(
        temperature_etl(hour=datetime(2024, 1, 31, 20), lookback_hours=12, **args),
        temperature_etl(hour=datetime(2024, 1, 31, 20), lookback_hours=12, **args),
        temperature_backfill(start="2024-01-31", end="2024-02-01", **args),
        return_exceptions=True,
    )

    assert not [r for r in results if isinstance(r, BaseException)], results
    assert_matches_reference(await target_rows(target), await reference(source, scenario.RANGE_START, scenario.RANGE_END))
    written = sum(r.totals["inserted"] for r in results)
    assert written == (await target_rows(target)).height  # each row inserted by exactly one run
