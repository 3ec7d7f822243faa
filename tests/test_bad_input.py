"""Bad input: a clear error that names the problem, and a target left exactly as it was."""

from __future__ import annotations

from datetime import datetime

import polars as pl
import pytest
from sqlalchemy import text

from blocks import BlockNotFound
from flows import temperature_backfill, temperature_etl
from flows.errors import MissingTableError, SourceDataError
from tests import scenario
from tests.helpers import make_db, query, unique


@pytest.fixture
async def sqlite_pair(db_pair):
    return await db_pair("sqlite->sqlite")

async def test_start_after_end_fails_before_any_work():
    with pytest.raises(ValueError, match=r"start=2024-02-01 is not before end=2024-01-31"):
        # blocks that do not exist: the range is checked first
        await temperature_backfill(start="2024-02-01", end="2024-01-31", source_block="nope", target_block="nope")


@pytest.mark.parametrize(
    "start,end,message",
    [
        ("2024-13-01", "2024-01-02", r"start='2024-13-01' is not a date 'YYYY-MM-DD' or a datetime"),
        ("2024-01-01", "yesterday", r"end='yesterday' is not a date 'YYYY-MM-DD' or a datetime"),
        ("2999-01-01", "2999-01-02", r"start=2999-01-01 00:00 is outside the accepted times"),
        ("2024-01-01T05:00", "2024-01-01T05:00", r"is not before end"),
        # times a plant cannot have stop before any query (year 1 became '-infinity' on PostgreSQL)
        ("0001-01-01", "0001-01-01", r"start=0001-01-01 00:00 is outside the accepted times 2000-01-01"),
        ("1999-12-31T23:00", "2024-01-01", r"start=1999-12-31 23:00 is outside the accepted times"),
        # only the documented forms: no basic ISO, no week dates
        ("20240131", "20240201", r"start='20240131' is not a date 'YYYY-MM-DD'"),
        ("2024-W05", "2024-W06", r"start='2024-W05' is not a date"),
    ],
)
async def test_bad_ranges_are_named(start, end, message):
    with pytest.raises(ValueError, match=message):
        await temperature_backfill(start=start, end=end, source_block="nope", target_block="nope")


@pytest.mark.parametrize(
    "kwargs,message",
    [
        (dict(start=20240131, end="2024-02-01"), r"20240131 is a number, not a date 'YYYY-MM-DD'"),  # not Unix seconds
        (dict(start="2024-01-01", end="2024-01-02", chunk_hours=True), r"True is not a whole number"),
        (dict(start="2024-01-01", end="2024-01-02", max_parallel=0), r"max_parallel=0 must be a whole number of chunks"),
    ],
)
async def test_parameters_take_only_their_documented_forms(kwargs, message):
    from prefect.exceptions import ParameterTypeError

    with pytest.raises((ValueError, ParameterTypeError), match=message):
        await temperature_backfill(**kwargs, source_block="nope", target_block="nope")


@pytest.mark.parametrize(
    "hour,message",
    [
        (datetime(1, 1, 1, 3), r"hour=0001-01-01 03:00 is outside the accepted times"),
        (1706677200, r"1706677200 is a number"),
        ("20240131", r"hour='20240131' is not a date"),
    ],
)
async def test_hourly_job_refuses_hours_a_plant_cannot_have(hour, message):
    from prefect.exceptions import ParameterTypeError

    with pytest.raises((ValueError, ParameterTypeError), match=message):
        await temperature_etl(hour=hour, source_block="nope", target_block="nope")


async def test_bad_chunk_and_lookback_are_named():
    with pytest.raises(ValueError, match=r"chunk_hours=0 must be a whole number of hours from 1"):
        await temperature_backfill(start="2024-01-01", end="2024-01-01", chunk_hours=0)
    with pytest.raises(ValueError, match=r"lookback_hours=-1 must be"):
        await temperature_etl(hour=datetime(2024, 1, 1), lookback_hours=-1)


async def test_malformed_block_name_is_named_before_any_work():
    with pytest.raises(ValueError, match=r"block name 'IoT DB; drop' is not valid"):
        await temperature_etl(hour=datetime(2024, 1, 31, 5), source_block="IoT DB; drop")


async def test_unknown_block_is_named(sqlite_pair):
    source, _ = sqlite_pair
    with pytest.raises(BlockNotFound, match=r"database block 'no-such-block' does not exist.*montrg blocks create"):
        await temperature_etl(hour=datetime(2024, 1, 31, 5), source_block=source.block, target_block="no-such-block")


async def test_missing_table_names_block_and_table(sqlite_url):
    source = await make_db(sqlite_url(), unique("t-iot-"))
    bare = await make_db(sqlite_url(), unique("t-hq-"), init=False)
    try:
        with pytest.raises(MissingTableError, match=rf"block '{bare.block}'.*missing table\(s\) temperature, etl_watermark.*montrg db init --block {bare.block}"):
            await temperature_etl(hour=datetime(2024, 1, 31, 5), source_block=source.block, target_block=bare.block)
    finally:
        await source.db.dispose()
        await bare.db.dispose()


async def test_text_in_a_numeric_column_fails_by_name_and_writes_nothing(sqlite_pair):
    """SQLite is loosely typed: a gateway can leave text in a REAL column."""
    from flows import store

    source, target = sqlite_pair
    await store.insert_raw(source.db, scenario.rows())
    await temperature_backfill(start="2024-01-31", end="2024-01-31", source_block=source.block, target_block=target.block)
    before = await query(target, "SELECT * FROM temperature ORDER BY loc_id, ymd, hh")
    async with source.db.engine.begin() as conn:
        await conn.execute(text("UPDATE temperature_raw SET temperature = 'ERR' WHERE loc_id = 'ONE'"))

    with pytest.raises(SourceDataError, match=r"temperature='ERR' \(str\) is not a number, at loc_id='ONE', capture_dt=2024-01-31 12:34:56"):
        await temperature_backfill(start="2024-01-31", end="2024-01-31", source_block=source.block, target_block=target.block)

    assert (await query(target, "SELECT * FROM temperature ORDER BY loc_id, ymd, hh")).equals(before)


async def test_non_finite_value_in_postgresql_fails_by_name_and_keeps_the_other_hours(pg_url):
    from flows import store

    source = await make_db(await pg_url(), unique("t-iot-"))
    target = await make_db(await pg_url(), unique("t-hq-"))
    try:
        await store.insert_raw(source.db, scenario.rows())
        async with source.db.engine.begin() as conn:
            await conn.execute(text(
                "UPDATE flet_montrg.temperature_raw SET humidity = 'Infinity' "
                "WHERE loc_id = 'EDGE' AND capture_dt = '2024-02-01 00:00:00'"
            ))
        with pytest.raises(SourceDataError, match=r"humidity is not a finite number: .*loc_id='EDGE'.*humidity=inf"):
            await temperature_backfill(start="2024-01-31", end="2024-02-01", source_block=source.block, target_block=target.block)
        # the first chunk (2024-01-31) committed; of the bad one (2024-02-01), all but EDGE's 00:00 hour
        written = await query(target, "SELECT loc_id, ymd, hh FROM flet_montrg.temperature WHERE ymd = '20240201'")
        assert written.height > 0 and ("EDGE", "20240201", "00") not in written.rows()
        days = await query(target, "SELECT DISTINCT ymd FROM flet_montrg.temperature ORDER BY ymd")
        assert days["ymd"].to_list() == ["20240131", "20240201"]
    finally:
        await source.db.dispose()
        await target.db.dispose()


@pytest.mark.parametrize("spec", ["postgresql->postgresql", "mariadb->postgresql", "sqlite->sqlite"])
async def test_overflowing_values_are_named_and_the_other_locations_hours_kept(db_pair, spec):
    """[1e308, 1e308, -1e308]: PostgreSQL's SUM overflows, MariaDB's silently becomes 0, SQLite's
    inf. Every dialect now names the location, hour and value, and writes the other locations."""
    from flows import store
    from flows.domain.aggregate import RAW_SCHEMA

    source, target = await db_pair(spec)
    hour = datetime(2024, 1, 31, 5)
    rows = [("OK", hour.replace(minute=m), 20.0 + m, 50.0, 25.0) for m in range(3)]
    rows += [("HUGE", hour.replace(minute=m), v, 50.0, 25.0) for m, v in enumerate((1e308, 1e308, -1e308))]
    await store.insert_raw(source.db, pl.DataFrame(rows, schema=RAW_SCHEMA, orient="row"))

    with pytest.raises(SourceDataError, match=r"temperature outside the physical limits \[-40, 125\]: loc_id='HUGE'.*temperature=1e\+308"):
        await temperature_backfill(start="2024-01-31", end="2024-01-31", source_block=source.block, target_block=target.block)

    written = await query(target, f"SELECT loc_id, hh, temperature_max, temperature_avg FROM {target.table('temperature')}")
    assert written.rows() == [("OK", "05", 22.0, 21.0)]


async def test_nan_is_refused_at_insert(sqlite_pair):
    from flows import store

    source, _ = sqlite_pair
    bad = pl.DataFrame({"loc_id": ["A"], "capture_dt": [datetime(2024, 1, 1)], "temperature": [float("nan")],
                        "humidity": [None], "pcv_temperature": [None]})
    with pytest.raises(SourceDataError, match="temperature holds NaN"):
        await store.insert_raw(source.db, bad)
    assert (await query(source, "SELECT COUNT(*) AS n FROM temperature_raw"))["n"].to_list() == [0]
