"""temperature_raw_etl and temperature_raw_backfill: device table (PostgreSQL, MariaDB) -> IoT database."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest
from sqlalchemy import MetaData, insert, text

from flows import store, temperature_raw_backfill, temperature_raw_etl
from flows.store.schema import device_table, sensors
from tests.helpers import make_db, query, unique

T0 = datetime(2024, 1, 10, 8, 0)


@pytest.fixture(params=["postgresql", "mariadb"])
async def raw_setup(request, pg_url, mariadb_url):
    """(device db, device table name, IoT db): a gateway table shaped like montrg.dbo.temperature."""
    made = []
    try:
        if request.param == "mariadb":
            mariadb_url()
        iot = await make_db(await pg_url(), unique("t-iot-"))
        made.append(iot)
        if request.param == "postgresql":
            device = await make_db(await pg_url(), unique("t-dev-"), init=False)
            name = "dbo.temperature"
            async with device.db.engine.begin() as conn:
                await conn.execute(text("CREATE SCHEMA dbo"))
        else:
            device = await make_db(mariadb_url(), unique("t-dev-"))  # creates the test's schema
            name = f"{device.db.schema}.device_temperature"
        made.append(device)
        table = device_table(name, MetaData())
        async with device.db.engine.begin() as conn:
            await conn.run_sync(table.metadata.create_all)
        async with iot.db.engine.begin() as conn:
            await conn.execute(insert(sensors), [{"sensor_id": f"S{i}", "loc_id": f"L{i}", "is_active": True} for i in (1, 2, 3)])
        yield device, table, iot
    finally:
        for d in made:
            await d.db.dispose()


def row(sensor, minute, t1, t2="50", t3="25", uploaded=None):
    capture = T0 + timedelta(minutes=minute)
    return {"sensor_id": sensor, "device_id": "GW1", "capture_dt": capture, "t1": t1, "t2": t2, "t3": t3,
            "t4": None, "t5": None, "t6": None, "upload_yn": "Y", "upload_dt": uploaded or capture + timedelta(seconds=30)}


GOOD = [row("S1", 0, "23.5"), row("S2", 0, " 24.25 ", "61.5", "26"), row("S3", 1, "19", None, "22.5")]
BAD = [
    (row("S1", 1, ""), "t1 (temperature) is empty"),
    (row("S1", 2, "abc"), "t1 (temperature)='abc' is not a number"),
    (row("S2", 1, "NaN"), "t1 (temperature) is NaN"),
    (row("S2", 2, "22", "150"), "humidity=150.0 outside the physical limits [0, 100]"),
    (row("S9", 0, "22"), "unknown sensor 'S9'"),
]


async def seed(device, table, rows):
    async with device.db.engine.begin() as conn:
        await conn.execute(insert(table), rows)


async def run(device, table, iot, **kw):
    return await temperature_raw_etl(device_block=device.block, device_table=table.fullname, iot_block=iot.block, **kw)


async def refuse_66_5(iot):
    """A trigger in the IoT database that refuses any reading of 66.5: a batch failing mid-load."""
    async with iot.db.engine.begin() as conn:
        await conn.execute(text(
            "CREATE FUNCTION refuse() RETURNS trigger AS $$ BEGIN "
            "IF NEW.temperature = 66.5 THEN RAISE EXCEPTION 'refused by test'; END IF; RETURN NEW; END $$ LANGUAGE plpgsql"
        ))
        await conn.execute(text(
            f"CREATE TRIGGER refuse BEFORE INSERT OR UPDATE ON {iot.table('temperature_raw')} FOR EACH ROW EXECUTE FUNCTION refuse()"
        ))


async def raw_rows(iot):
    return await query(iot, f"SELECT loc_id, capture_dt, temperature, humidity, pcv_temperature FROM {iot.table('temperature_raw')} ORDER BY loc_id, capture_dt")


async def reject_rows(iot):
    return await query(iot, f"SELECT sensor_id, capture_dt, reason, raw_values FROM {iot.table('temperature_raw_reject')} ORDER BY sensor_id, capture_dt")


async def test_valid_rows_arrive_typed_and_bad_rows_are_kept_aside_with_reasons(raw_setup):
    device, table, iot = raw_setup
    await seed(device, table, GOOD + [r for r, _ in BAD])

    await run(device, table, iot)

    assert (await raw_rows(iot)).rows() == [
        ("L1", T0, 23.5, 50.0, 25.0),
        ("L2", T0, 24.25, 61.5, 26.0),
        ("L3", T0 + timedelta(minutes=1), 19.0, None, 22.5),
    ]
    rejects = await reject_rows(iot)
    assert sorted(rejects["reason"].to_list()) == sorted(reason for _, reason in BAD)
    assert '"t1": "abc"' in rejects.filter(sensor_id="S1")["raw_values"].to_list()[1]  # the original text


async def test_rerun_changes_nothing_and_late_uploads_are_loaded(raw_setup):
    device, table, iot = raw_setup
    await seed(device, table, GOOD + [r for r, _ in BAD])
    await run(device, table, iot)
    first_raw, first_rejects = await raw_rows(iot), await reject_rows(iot)

    await run(device, table, iot)
    assert (await raw_rows(iot)).equals(first_raw) and (await reject_rows(iot)).equals(first_rejects)

    watermark = await store.get_watermark(iot.db, f"temperature-raw-etl:{device.block}:{table.fullname}")
    # captured long before the watermark, uploaded just after it: the original lost these
    await seed(device, table, [row("S1", -600, "18.5", uploaded=watermark + timedelta(seconds=1))])
    await run(device, table, iot)

    assert ("L1", T0 - timedelta(minutes=600), 18.5, 50.0, 25.0) in (await raw_rows(iot)).rows()


async def test_failed_load_leaves_the_watermark_where_it_was(raw_setup):
    device, table, iot = raw_setup
    job = f"temperature-raw-etl:{device.block}:{table.fullname}"
    await seed(device, table, GOOD)
    await run(device, table, iot)
    before = await store.get_watermark(iot.db, job)
    async with iot.db.engine.begin() as conn:  # the IoT database refuses the next load midway
        await conn.execute(text(
            "CREATE FUNCTION refuse() RETURNS trigger AS $$ BEGIN "
            "RAISE EXCEPTION 'refused by test'; END $$ LANGUAGE plpgsql"
        ))
        await conn.execute(text(
            f"CREATE TRIGGER refuse BEFORE INSERT ON {iot.table('temperature_raw')} FOR EACH ROW EXECUTE FUNCTION refuse()"
        ))
    await seed(device, table, [row("S1", 30, "30", uploaded=before + timedelta(minutes=5))])

    with pytest.raises(Exception, match="refused by test"):
        await run(device, table, iot)
    assert await store.get_watermark(iot.db, job) == before

    async with iot.db.engine.begin() as conn:
        await conn.execute(text(f"DROP TRIGGER refuse ON {iot.table('temperature_raw')}"))
    await run(device, table, iot)
    assert await store.get_watermark(iot.db, job) == before + timedelta(minutes=5)
    assert (await raw_rows(iot)).height == len(GOOD) + 1


async def test_a_later_upload_corrects_a_reading(raw_setup):
    device, table, iot = raw_setup
    await seed(device, table, GOOD)
    await run(device, table, iot)
    await seed(device, table, [row("S1", 0, "23.75", uploaded=T0 + timedelta(hours=2))])

    await run(device, table, iot)

    assert (await raw_rows(iot)).filter(loc_id="L1")["temperature"].to_list() == [23.75]


async def test_uploads_replaced_within_a_batch_are_counted_so_every_row_read_is_accounted_for(raw_setup):
    """Two uploads of one reading in one read: the later is loaded, the earlier is counted as
    replaced (not loaded, not rejected), so rows read = loaded + rejected + replaced."""
    device, table, iot = raw_setup
    later = T0 + timedelta(hours=2)
    await seed(device, table, GOOD + [BAD[1][0], row("S1", 0, "23.75", uploaded=later), row("S1", 0, "23.9", uploaded=later + timedelta(seconds=1))])

    reports = await run(device, table, iot)

    assert [(r.rows_read, r.loaded, r.rejected, r.replaced) for r in reports] == [(6, 3, 1, 2)]
    assert all(r.rows_read == r.loaded + r.rejected + r.replaced for r in reports)
    assert (await raw_rows(iot)).filter(loc_id="L1")["temperature"].to_list() == [23.9]


async def test_a_batch_of_new_readings_and_corrections_loads_both(raw_setup):
    """Steady state: one batch holds readings after every stored one (copied straight in on
    PostgreSQL) and a correction of a stored one (staged and upserted); both land, once."""
    device, table, iot = raw_setup
    await seed(device, table, GOOD)
    await run(device, table, iot)
    later = T0 + timedelta(hours=2)
    await seed(device, table, [row("S1", 0, "23.75", uploaded=later), row("S1", 5, "24", uploaded=later),
                               row("S2", 6, "25", uploaded=later)])

    await run(device, table, iot)

    stored = (await raw_rows(iot)).select("loc_id", "capture_dt", "temperature").rows()
    assert stored == [("L1", T0, 23.75), ("L1", T0 + timedelta(minutes=5), 24.0), ("L2", T0, 24.25),
                      ("L2", T0 + timedelta(minutes=6), 25.0), ("L3", T0 + timedelta(minutes=1), 19.0)]


async def test_outlier_filter_moves_a_spike_to_the_reject_table(raw_setup):
    device, table, iot = raw_setup
    series = [row("S1", m, f"{22 + 0.1 * (m % 3):.1f}") for m in range(40)]
    series[20] = row("S1", 20, "95.0")
    await seed(device, table, series)

    await run(device, table, iot, outlier_mads=6.0)

    assert (await raw_rows(iot)).height == 39
    assert [r.startswith("outlier: temperature=95.0") for r in (await reject_rows(iot))["reason"]] == [True]


async def test_raw_backfill_is_inclusive_and_idempotent(raw_setup):
    device, table, iot = raw_setup
    days = [datetime(2024, 1, d, h) for d in (1, 2, 3) for h in (0, 12, 23)]
    await seed(device, table, [
        {**row("S1", 0, "21.0"), "capture_dt": day, "upload_dt": day + timedelta(minutes=1)} for day in days
    ] + [{**row("S2", 0, "oops"), "capture_dt": datetime(2024, 1, 2, 6)}])

    args = dict(start="2024-01-01", end="2024-01-02", device_block=device.block, device_table=table.fullname, iot_block=iot.block)
    await temperature_raw_backfill(**args)
    first_raw, first_rejects = await raw_rows(iot), await reject_rows(iot)
    await temperature_raw_backfill(**args)

    assert first_raw["capture_dt"].to_list() == [d for d in days if d.day in (1, 2)]
    assert first_rejects["reason"].to_list() == ["t1 (temperature)='oops' is not a number"]
    assert (await raw_rows(iot)).equals(first_raw) and (await reject_rows(iot)).equals(first_rejects)


@pytest.mark.parametrize("flow", ["etl", "backfill"])
async def test_both_raw_flows_check_their_reading_parameters_alike(flow):
    days = dict(start="2024-01-01", end="2024-01-01") if flow == "backfill" else {}
    call = temperature_raw_backfill if flow == "backfill" else temperature_raw_etl
    with pytest.raises(ValueError, match=r"outlier_mads=0.0 must be positive"):
        await call(outlier_mads=0.0, **days)
    with pytest.raises(ValueError, match=r"limits: humidity=\[100.0, 0.0\] has low > high"):
        await call(limits={"humidity": [100, 0]}, **days)
    with pytest.raises(ValueError, match=r"source_block='a' and iot_block='b' disagree"):
        await call(source_block="a", iot_block="b", **days)


async def test_the_old_name_source_block_still_names_the_iot_database(raw_setup):
    device, table, iot = raw_setup
    await seed(device, table, [row("S1", 0, "21.5")])
    with pytest.warns(DeprecationWarning, match="source_block='.*' is deprecated: the IoT database is iot_block"):
        reports = await temperature_raw_etl(device_block=device.block, device_table=table.fullname, source_block=iot.block)
    assert sum(r.loaded for r in reports) == 1
    assert (await raw_rows(iot))["temperature"].to_list() == [21.5]


async def test_bad_parameters_are_named_before_any_work():
    with pytest.raises(ValueError, match=r"value_columns: temperature -> 't9' is not one of t1..t6"):
        await temperature_raw_etl(value_columns={"temperature": "t9"})
    with pytest.raises(ValueError, match=r"limits: humidity=\[100.0, 0.0\] has low > high"):
        await temperature_raw_etl(limits={"humidity": [100, 0]})
    with pytest.raises(ValueError, match=r"device_table='dbo.temperature; DROP TABLE x' is not a valid identifier"):
        await temperature_raw_etl(device_table="dbo.temperature; DROP TABLE x")
    with pytest.raises(ValueError, match=r"overlap_minutes=-1 must be a whole number of minutes from 0 to 10080"):
        await temperature_raw_etl(overlap_minutes=-1)


async def test_small_batches_stream_with_a_small_first_one_and_load_everything_once(raw_setup):
    device, table, iot = raw_setup
    series = [row(f"S{1 + i % 3}", 10 + i // 3, f"{20 + (i % 7) * 0.5}") for i in range(60)]
    await seed(device, table, series + [r for r, _ in BAD])

    reports = await run(device, table, iot, batch_rows=8)

    assert [r.rows_read for r in reports] == [1] + [8] * 8  # 65 rows; the small first batch starts the pipeline early
    assert sum(r.loaded for r in reports) == 60 and sum(r.rejected for r in reports) == len(BAD)
    stored = await raw_rows(iot)
    assert stored.height == 60 and stored.select("loc_id", "capture_dt").is_unique().all()
    assert sorted((await reject_rows(iot))["reason"].to_list()) == sorted(reason for _, reason in BAD)
    job = f"temperature-raw-etl:{device.block}:{table.fullname}"
    assert await store.get_watermark(iot.db, job) == max(r["upload_dt"] for r in series)


async def test_a_batch_failing_midstream_keeps_the_batches_before_it_and_their_watermark(raw_setup):
    device, table, iot = raw_setup
    series = [row("S1", m, f"{20 + (m % 5) * 0.5}") for m in range(40)]
    series[25] = row("S1", 25, "66.5")  # refused by the IoT database
    await seed(device, table, series)
    await refuse_66_5(iot)

    with pytest.raises(Exception, match="refused by test"):
        await run(device, table, iot, batch_rows=10, overlap_minutes=0)

    job = f"temperature-raw-etl:{device.block}:{table.fullname}"
    watermark = await store.get_watermark(iot.db, job)
    stored = await raw_rows(iot)
    assert watermark == series[20]["upload_dt"]  # batches of 1, 10, 10 rows committed: minutes 0..20
    assert stored["capture_dt"].to_list() == [r["capture_dt"] for r in series[:21]]

    async with iot.db.engine.begin() as conn:
        await conn.execute(text(f"DROP TRIGGER refuse ON {iot.table('temperature_raw')}"))
    await run(device, table, iot, batch_rows=10, overlap_minutes=0)
    assert (await raw_rows(iot))["capture_dt"].to_list() == [r["capture_dt"] for r in series]
    assert await store.get_watermark(iot.db, job) == series[-1]["upload_dt"]


async def test_rows_without_an_upload_time_are_rejected_as_such_not_lost(raw_setup):
    device, table, iot = raw_setup
    orphan = {**row("S1", 5, "21"), "upload_dt": None}
    await seed(device, table, GOOD + [orphan])

    await run(device, table, iot)
    await run(device, table, iot)  # read again each run, recorded once
    await temperature_raw_backfill(start=T0.date(), end=T0.date(), device_block=device.block,
                                   device_table=table.fullname, iot_block=iot.block)  # the backfill agrees

    assert len(await raw_rows(iot)) == len(GOOD)
    rejects = await reject_rows(iot)
    assert rejects.select("sensor_id", "capture_dt", "reason").rows() == [("S1", orphan["capture_dt"], "upload_dt is missing (no upload time)")]


async def test_upload_times_tied_across_a_failed_batch_boundary_are_not_skipped(raw_setup):
    """overlap_minutes=0, batches of 10, 30 rows sharing 3 upload times; the second batch fails:
    the rerun still loads every row (the watermark is read inclusively)."""
    device, table, iot = raw_setup
    ties = [row("S1", m, f"{20 + m % 7}", uploaded=T0 + timedelta(hours=1, minutes=m // 12)) for m in range(30)]
    ties[15] = row("S1", 15, "66.5", uploaded=ties[15]["upload_dt"])  # refused by the IoT database
    await seed(device, table, ties)
    await refuse_66_5(iot)
    with pytest.raises(Exception, match="refused by test"):
        await run(device, table, iot, batch_rows=10, overlap_minutes=0)
    async with iot.db.engine.begin() as conn:
        await conn.execute(text(f"DROP TRIGGER refuse ON {iot.table('temperature_raw')}"))

    await run(device, table, iot, batch_rows=10, overlap_minutes=0)
    assert (await raw_rows(iot))["capture_dt"].to_list() == [r["capture_dt"] for r in ties]


async def test_a_conflicting_row_committed_during_copy_falls_back_to_staging(pg_url):
    """COPY straight into temperature_raw meets a row another session commits meanwhile: asyncpg's
    own UniqueViolationError, not SQLAlchemy's; the batch is staged and upserted instead."""
    import asyncio

    import polars as pl

    from flows.domain.aggregate import RAW_SCHEMA

    iot = await make_db(await pg_url(), unique("t-iot-"))
    rows = pl.DataFrame(
        [(f"L{i}", T0 + timedelta(seconds=i), 20.0 + i, 50.0, 25.0) for i in range(100)], schema=RAW_SCHEMA, orient="row"
    )
    other = await iot.db.engine.connect()
    try:
        await other.begin()
        await other.execute(text(f"INSERT INTO {iot.table('temperature_raw')} (loc_id, capture_dt, temperature) VALUES ('L50', :t, 99)"),
                            {"t": T0 + timedelta(seconds=50)})
        write = asyncio.ensure_future(store.write_readings(iot.db, rows, replace=True))
        deadline = asyncio.get_running_loop().time() + 60
        while True:  # until the COPY waits for the other session's row lock (a minute at most)
            assert asyncio.get_running_loop().time() < deadline, "the COPY never waited for the other session's lock"
            async with iot.db.engine.connect() as probe:
                waiting = (await probe.execute(text(
                    "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND datname = current_database()"
                ))).scalar()
            if waiting or write.done():
                break
            await asyncio.sleep(0.05)
        await other.commit()
        result = await write
    finally:
        await other.close()
        await iot.db.dispose()
    assert result.written == 100
