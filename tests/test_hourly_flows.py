"""temperature_backfill and temperature_etl on real database pairs, checked against SQL GROUP BY."""

from __future__ import annotations

from datetime import datetime, timedelta

import polars as pl
import pytest

from flows import store, temperature_backfill, temperature_etl
from flows.settings import plant_now
from tests import scenario
from tests.helpers import assert_matches_reference, make_db, query, reference, target_rows, unique

PAIRS = ["postgresql->postgresql", "mariadb->postgresql", "postgresql->mariadb", "mariadb->mariadb", "sqlite->sqlite"]


@pytest.fixture(params=PAIRS)
async def pair(request, db_pair):
    """(source, target) test databases of one dialect pair, schema created, blocks saved."""
    return await db_pair(request.param)

async def seed(source, df: pl.DataFrame) -> None:
    assert await store.insert_raw(source.db, df) == df.height


async def test_backfill_equals_sql_group_by(pair):
    source, target = pair
    await seed(source, scenario.rows())

    report = await temperature_backfill(
        start="2024-01-31", end="2024-02-01", source_block=source.block, target_block=target.block
    )

    expected = await reference(source, scenario.RANGE_START, scenario.RANGE_END)
    assert_matches_reference(await target_rows(target), expected)
    assert report.window == "[2024-01-31 00:00, 2024-02-02 00:00)"
    assert report.totals["location_hours"] == expected.height
    assert len(report.chunks) == 2 and await latest_progress() == 100.0  # updated at most once a second, always at the end
    # the cases the scenario plants are really there, as SQL sees them
    one = expected.filter(loc_id="ONE")
    assert one["sample_count"].to_list() == [1] and one["temperature_avg"].to_list() == [21.5]
    all_null = expected.filter(loc_id="LOC002", ymd="20240131", hh="05")
    assert all_null["humidity_count"].to_list() == [0] and all_null["humidity_avg"].is_null().all()
    edge = expected.filter(loc_id="EDGE")
    assert edge.select("ymd", "hh", "sample_count").rows() == [
        ("20240131", "23", 2), ("20240201", "00", 2), ("20240201", "01", 1)
    ]


async def test_backfill_touches_only_its_range_and_reruns_identically(pair):
    source, target = pair
    await seed(source, scenario.rows())
    t = target.table("temperature")
    # sentinel rows just outside the range, already in the target
    async with target.db.engine.begin() as conn:
        from sqlalchemy import text

        for ymd, hh in (("20240130", "23"), ("20240202", "00")):
            await conn.execute(
                text(f"INSERT INTO {t} (loc_id, ymd, hh, temperature_max, sample_count) VALUES ('LOC001', :y, :h, 999, 7)"),
                {"y": ymd, "h": hh},
            )

    await temperature_backfill(start="2024-01-31", end="2024-02-01", source_block=source.block, target_block=target.block)
    first = await query(target, f"SELECT * FROM {t} ORDER BY loc_id, ymd, hh")
    again = await temperature_backfill(
        start="2024-01-31", end="2024-02-01", source_block=source.block, target_block=target.block
    )
    second = await query(target, f"SELECT * FROM {t} ORDER BY loc_id, ymd, hh")

    assert first.equals(second), "a second identical backfill changed the table (calc_dt included)"
    assert again.totals["inserted"] == 0 and again.totals["updated"] == 0
    outside = second.filter(pl.col("ymd").is_in(["20240130", "20240202"]))
    assert outside.select("ymd", "hh", "temperature_max", "sample_count").sort("ymd").rows() == [
        ("20240130", "23", 999.0, 7), ("20240202", "00", 999.0, 7)
    ]
    inside = second.filter(~pl.col("ymd").is_in(["20240130", "20240202"]))
    assert inside.height == (await reference(source, scenario.RANGE_START, scenario.RANGE_END)).height


async def test_late_rows_are_picked_up_by_the_next_hourly_run(pair):
    source, target = pair
    await seed(source, scenario.rows())
    await temperature_backfill(start="2024-01-31", end="2024-01-31", source_block=source.block, target_block=target.block)
    late = pl.DataFrame(
        {"loc_id": ["LOC001", "LATE"], "capture_dt": [datetime(2024, 1, 31, 14, 59, 59), datetime(2024, 1, 31, 14, 30)],
         "temperature": [88.5, 10.0], "humidity": [1.0, None], "pcv_temperature": [None, 12.0]},
    )
    await seed(source, late)

    report = await temperature_etl(
        hour=datetime(2024, 1, 31, 15), lookback_hours=3, source_block=source.block, target_block=target.block
    )

    assert report.window == "[2024-01-31 12:00, 2024-01-31 16:00)"
    assert report.totals["inserted"] == 1 and report.totals["updated"] == 1  # LATE new, LOC001 14h changed
    expected = await reference(source, datetime(2024, 1, 31), datetime(2024, 2, 1))
    assert_matches_reference(await target_rows(target, "ymd = '20240131'"), expected)
    assert expected.filter(loc_id="LOC001", hh="14")["temperature_max"].to_list() == [88.5]


async def test_empty_window_writes_nothing_and_succeeds(pair):
    source, target = pair
    await seed(source, scenario.rows())

    report = await temperature_backfill(
        start="2023-06-01", end="2023-06-01", source_block=source.block, target_block=target.block
    )
    hourly = await temperature_etl(hour=datetime(2023, 6, 2, 5), source_block=source.block, target_block=target.block)

    assert report.totals["raw_rows"] == 0 and hourly.totals["raw_rows"] == 0
    assert (await target_rows(target)).is_empty()


async def test_scheduled_run_catches_up_missed_hours(pair):
    """With a watermark 6 hours behind, the next scheduled run aggregates every missed hour."""
    source, target = pair
    last_full = plant_now().replace(minute=0, second=0, microsecond=0) - timedelta(hours=1)
    start = last_full - timedelta(hours=9)
    from flows.ops.simulate import readings

    await seed(source, readings(3, start, last_full + timedelta(hours=1), every_seconds=600))
    watermark = last_full - timedelta(hours=6)  # runs after this were missed
    await store.extend_watermark(target.db, "temperature-etl", watermark, watermark, plant_now(), create=True)

    report = await temperature_etl(source_block=source.block, target_block=target.block)

    assert report.window == f"[{watermark:%Y-%m-%d %H:%M}, {last_full + timedelta(hours=1):%Y-%m-%d %H:%M})"
    stored = await target_rows(target)
    expected = await reference(source, watermark, last_full + timedelta(hours=1))
    assert_matches_reference(stored, expected)
    assert await store.get_watermark(target.db, "temperature-etl") == last_full + timedelta(hours=1)


@pytest.mark.parametrize("kind", ["postgresql", "mariadb"])
async def test_pushdown_and_raw_paths_give_equal_results(kind, pg_url, mariadb_url):
    """The source's partial aggregates, finished in Polars, equal Polars over the raw rows."""
    from flows.domain import aggregate
    from flows.domain.windows import Window

    if kind == "mariadb":
        mariadb_url()
    source = await make_db(await pg_url() if kind == "postgresql" else mariadb_url(), unique("t-iot-"))
    try:
        await seed(source, scenario.rows())
        window = Window(scenario.RANGE_START, scenario.RANGE_END)
        pushed = aggregate.encode_key(aggregate.finish_partial(await store.read_partial_hourly(source.db, window)))
        raw = aggregate.encode_key(aggregate.hourly(await store.read_raw(source.db, window)))
        assert_matches_reference(pushed, raw)
        assert_matches_reference(pushed, await reference(source, scenario.RANGE_START, scenario.RANGE_END))
    finally:
        await source.db.dispose()


async def latest_progress() -> float:
    """The latest temperature-backfill progress artifact's value."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey

    async with get_client() as client:
        found = await client.read_latest_artifacts(artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=["temperature-backfill"])))
    return float(found[0].data)


async def latest_plan() -> list[dict]:
    """The latest temperature-backfill-plan artifact's table."""
    import json

    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey

    async with get_client() as client:
        found = await client.read_latest_artifacts(artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=["temperature-backfill-plan"])))
    return json.loads(found[0].data)


async def test_a_backfill_of_26_years_in_hourly_chunks_is_refused_before_any_work_with_a_size_that_fits():
    with pytest.raises(ValueError, match=r"into 235,968 chunks, more than the limit of 10,000; give chunk_hours=24 \(9,832 chunks\)"):
        # blocks that do not exist: the plan is refused before any database is looked for
        await temperature_backfill(start="2000-01-01", end="2026-12-01", chunk_hours=1, source_block="none-such", target_block="none-such")


async def test_the_plan_skips_what_precedes_the_sources_first_reading_and_says_so(db_pair):
    source, target = await db_pair("postgresql->postgresql")
    report = await temperature_backfill(start="2000-01-01", end="2026-12-01", chunk_hours=24, source_block=source.block, target_block=target.block)
    assert report.chunks == [] and report.window == "[2000-01-01 00:00, 2026-12-02 00:00)"  # an empty source: no chunk runs
    plan = {row["item"]: row["value"] for row in await latest_plan()}
    assert (plan["chunks"], plan["chunks to run"]) == ("9,832 (limit 10,000)", "0")
    assert plan["readings in the source (estimate)"].replace(",", "").isdigit()  # the planner's guess on an empty table

    await seed(source, scenario.rows())  # readings from 2024-01-30 22:00 on
    report = await temperature_backfill(start="2024-01-01", end="2024-02-01", source_block=source.block, target_block=target.block)
    plan = {row["item"]: row["value"] for row in await latest_plan()}
    assert plan["chunk_hours"] == "24 (chosen)" and plan["chunks to run"] == "3" and plan["chunks skipped (before the source's first reading)"] == "29"
    assert int(plan["readings in the source (estimate)"].replace(",", "")) > 0
    assert [c.window[1:11] for c in report.chunks] == ["2024-01-30", "2024-01-31", "2024-02-01"]
    assert_matches_reference(await target_rows(target), await reference(source, datetime(2024, 1, 1), scenario.RANGE_END))
