"""master_etl on PostgreSQL and MariaDB: insert, update, deactivate, dry run, bad rows by name."""

from __future__ import annotations

import json

import pytest
from sqlalchemy import delete, insert, update

from flows import master_etl
from flows.errors import MasterDataError
from flows.store.schema import locations, sensors, thresholds
from tests.helpers import query

REGISTERS = json.dumps({"temperature": {"address": 1, "type": "float32", "scale": 1.0, "word_order": "big"}})


@pytest.fixture(params=["postgresql->postgresql", "mariadb->postgresql", "postgresql->mariadb", "mariadb->mariadb"])
async def master_pair(request, db_pair):
    """(source, target); on one MariaDB server the HQ database has a schema of its own."""
    return await db_pair(request.param)

async def seed_master(db) -> None:
    async with db.engine.begin() as conn:
        await conn.execute(insert(locations), [
            {"loc_id": f"L{i}", "plant": "P1", "factory": "F1", "building": "B1", "floor": str(i % 3),
             "area": "A", "location_name": f"Line {i}", "is_active": True} for i in range(1, 5)
        ])
        await conn.execute(insert(sensors), [
            {"sensor_id": f"S{i}", "loc_id": f"L{i}", "name": f"sensor {i}", "host": "127.0.0.1",
             "port": 5020, "device_id": i, "registers": REGISTERS, "is_active": True} for i in range(1, 5)
        ])
        await conn.execute(insert(thresholds), [  # every row names every column (executemany)
            {"loc_id": None, "threshold_id": 1, "threshold_type": "temperature", "level": "yellow", "min_value": 10.0, "max_value": 30.0, "is_active": True},
            {"loc_id": None, "threshold_id": 2, "threshold_type": "temperature", "level": "red", "min_value": 5.0, "max_value": 35.0, "is_active": True},
            {"threshold_id": 3, "threshold_type": "humidity", "level": "yellow", "min_value": None, "max_value": 70.0, "loc_id": "L2", "is_active": True},
        ])


async def snapshot(d, table: str, key: str):
    return await query(d, f"SELECT * FROM {d.table(table)} ORDER BY {key}")


async def test_first_sync_copies_everything_and_a_rerun_changes_nothing(master_pair):
    source, target = master_pair
    await seed_master(source.db)

    first = await master_etl(source_block=source.block, target_block=target.block)
    again = await master_etl(source_block=source.block, target_block=target.block)

    assert [(r["table"], r["inserted"]) for r in first] == [("locations", 4), ("sensors", 4), ("thresholds", 3)]
    assert all(r["inserted"] == r["updated"] == r["deactivated"] == 0 for r in again)
    for table, key in (("locations", "loc_id"), ("sensors", "sensor_id"), ("thresholds", "threshold_id")):
        src = (await snapshot(source, table, key)).drop("upd_dt")
        tgt = (await snapshot(target, table, key)).drop("upd_dt")
        assert src.equals(tgt), table


async def test_change_addition_and_removal_become_update_insert_deactivation(master_pair):
    source, target = master_pair
    await seed_master(source.db)
    await master_etl(source_block=source.block, target_block=target.block)
    async with source.db.engine.begin() as conn:
        await conn.execute(update(locations).where(locations.c.loc_id == "L1").values(location_name="Line 1 (moved)"))
        await conn.execute(insert(locations).values(loc_id="L9", plant="P1", location_name="New line", is_active=True))
        await conn.execute(delete(sensors).where(sensors.c.sensor_id == "S4"))
        await conn.execute(delete(locations).where(locations.c.loc_id == "L4"))

    before = {table: await snapshot(target, table, key) for table, key in (("locations", "loc_id"), ("sensors", "sensor_id"))}
    dry = await master_etl(dry_run=True, source_block=source.block, target_block=target.block)
    for table, key in (("locations", "loc_id"), ("sensors", "sensor_id")):  # the dry run wrote nothing
        assert (await snapshot(target, table, key)).equals(before[table])
    report = await master_etl(source_block=source.block, target_block=target.block)

    assert dry == report
    assert report[0] == {"table": "locations", "inserted": 1, "updated": 1, "deactivated": 1, "rejected": 0}
    assert report[1] == {"table": "sensors", "inserted": 0, "updated": 0, "deactivated": 1, "rejected": 0}
    locs = await snapshot(target, "locations", "loc_id")
    assert locs.filter(loc_id="L1")["location_name"].to_list() == ["Line 1 (moved)"]
    assert locs.filter(loc_id="L9").height == 1
    assert [bool(v) for v in locs.filter(loc_id="L4")["is_active"]] == [False]  # kept, inactive
    assert [bool(v) for v in (await snapshot(target, "sensors", "sensor_id")).filter(sensor_id="S4")["is_active"]] == [False]


async def test_dry_run_writes_nothing(master_pair):
    source, target = master_pair
    await seed_master(source.db)

    report = await master_etl(dry_run=True, source_block=source.block, target_block=target.block)

    assert [r["inserted"] for r in report] == [4, 4, 3]
    for table, key in (("locations", "loc_id"), ("sensors", "sensor_id"), ("thresholds", "threshold_id")):
        assert (await snapshot(target, table, key)).is_empty()


async def test_orphan_sensor_is_named_and_not_loaded(master_pair):
    source, target = master_pair
    await seed_master(source.db)
    async with source.db.engine.begin() as conn:
        await conn.execute(insert(sensors).values(sensor_id="S-ORPHAN", loc_id="L-NOWHERE", is_active=True))

    report = await master_etl(source_block=source.block, target_block=target.block)
    with pytest.raises(MasterDataError, match=r"sensor S-ORPHAN points at unknown location L-NOWHERE"):
        await master_etl(orphan_sensors="fail", source_block=source.block, target_block=target.block)

    assert report[1] == {"table": "sensors", "inserted": 4, "updated": 0, "deactivated": 0, "rejected": 1}
    assert "S-ORPHAN" not in (await snapshot(target, "sensors", "sensor_id"))["sensor_id"].to_list()


@pytest.mark.parametrize(
    "bad,message",
    [
        ({"threshold_type": "temperature", "level": "red", "min_value": 40.0, "max_value": 20.0}, r"min_value 40.0 > max_value 20.0: threshold_id=9"),
        ({"threshold_type": "pressure", "level": "red", "min_value": 1.0, "max_value": 2.0}, r"unknown measure pressure \(expected .*\): threshold_id=9"),
    ],
)
async def test_invalid_threshold_is_rejected_by_name(master_pair, bad, message):
    source, target = master_pair
    await seed_master(source.db)
    async with source.db.engine.begin() as conn:
        await conn.execute(insert(thresholds).values(threshold_id=9, is_active=True, **bad))

    with pytest.raises(MasterDataError, match=message):
        await master_etl(source_block=source.block, target_block=target.block)

    ids = (await snapshot(target, "thresholds", "threshold_id"))["threshold_id"].to_list()
    assert ids == [1, 2, 3]  # the valid ones were synced, the bad one was not


async def test_a_location_with_an_impossible_polling_interval_is_rejected_by_name(master_pair):
    source, target = master_pair
    await seed_master(source.db)
    async with source.db.engine.begin() as conn:
        await conn.execute(update(locations).where(locations.c.loc_id == "L1").values(poll_interval_s=60.0))
        await conn.execute(update(locations).where(locations.c.loc_id == "L3").values(poll_interval_s=0.0))

    with pytest.raises(MasterDataError, match=r"poll_interval_s 0.0 is not 0.1..3600 seconds: loc_id='L3'"):
        await master_etl(source_block=source.block, target_block=target.block)

    synced = await snapshot(target, "locations", "loc_id")
    assert synced.select("loc_id", "poll_interval_s").rows() == [("L1", 60.0), ("L2", None), ("L4", None)]


async def test_a_database_is_never_synced_onto_itself(db_pair, pg_url):
    from blocks import create_block
    from tests.helpers import unique

    source, _ = await db_pair("postgresql->postgresql")
    with pytest.raises(ValueError, match=rf"source_block and target_block are both '{source.block}': master_etl would sync a database onto itself"):
        await master_etl(source_block=source.block, target_block=source.block)
    twin = unique("twin-")  # another block, the same URL
    await create_block(twin, source.db.url.render_as_string(hide_password=False).replace("+asyncpg", ""))
    with pytest.raises(ValueError, match=rf"source_block='{source.block}' and target_block='{twin}' are the same database and schema"):
        await master_etl(source_block=source.block, target_block=twin)


@pytest.mark.parametrize("value", ["yes", "1", 1, "on"])
async def test_dry_run_is_true_or_false_nothing_else(value):
    from flows.errors import ParameterError

    with pytest.raises(ParameterError) as refused:  # one line, before any block is looked for
        await master_etl(dry_run=value, source_block="none-such", target_block="none-such-hq")
    assert str(refused.value) == f"dry_run={value!r} is not true or false"
