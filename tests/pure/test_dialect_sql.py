"""Every statement the flows send to a SQL Server or Oracle source, compiled by the dialect the
block's URL selects (mssql+aioodbc, oracle+oracledb_async), and their shape asserted. No server of either
runs here: this proves the SQL each dialect is sent, not that a live server accepts it (README,
"Databases"). The same statements run for real against PostgreSQL, MariaDB and SQLite elsewhere."""

from __future__ import annotations

import re
from datetime import datetime

import pytest

from blocks import async_url
from flows.domain.windows import Window
from flows.store.connection import Database
from flows.store.hourly import horizon_query, partial_query
from flows.store.master import MASTER_TABLES, master_tables
from flows.store.raw import device_query, device_range_query, raw_query
from flows.store.schema import SCHEMA_TOKEN, device_table
from flows.store.writes import rows_query

URLS = {
    "mssql": "mssql://montrg:S3cret-pw@127.0.0.1:1433/montrg?montrg_schema=dbo",
    "oracle": "oracle://montrg:S3cret-pw@127.0.0.1:1521/?service_name=FREEPDB1&montrg_schema=montrg",
}
PARAM = {"mssql": r"\?", "oracle": r":\w+"}  # pyodbc's qmark, oracledb's named style
WINDOW = Window(datetime(2024, 3, 1, 0), datetime(2024, 3, 2, 0))
GATEWAY = device_table("dbo.temperature")


@pytest.fixture(params=sorted(URLS))
def db(request):
    return Database.from_url("gw", async_url(URLS[request.param]))


def compiled(db: Database, statement):
    return statement.compile(
        dialect=db.engine.dialect, schema_translate_map={SCHEMA_TOKEN: db.schema}, render_schema_translate=True
    )


def statements(db: Database) -> dict[str, object]:
    """What each flow sends to a source: the raw ETL and raw backfill (device table), master_etl
    (the three master tables), the hourly extract (pushdown, the raw fallback, the first reading)."""
    out = {
        "raw etl: rows without upload time": device_query(GATEWAY, "upload_dt", missing=True),
        "raw etl: rows since the watermark": device_query(GATEWAY, "upload_dt", WINDOW.start),
        "raw etl: by capture time, bounded": device_query(GATEWAY, "capture_dt", WINDOW.start, WINDOW.end),
        "raw backfill: a capture_dt range": device_range_query(GATEWAY, WINDOW.start, WINDOW.end),
        "hourly: aggregated in the source": partial_query(db.engine.dialect, WINDOW),
        "hourly: raw rows (fallback)": raw_query(WINDOW),
        "hourly: the source's first reading": horizon_query(),
    }
    for spec, table in zip(MASTER_TABLES, master_tables()):
        out[f"master: {spec.name}"] = rows_query(table, list(spec.columns))
    return out


def test_the_block_url_selects_the_async_driver_and_keeps_the_password_out_of_sight(db):
    assert db.engine.dialect.is_async
    assert db.engine.dialect.driver == {"mssql": "aioodbc", "oracle": "oracledb"}[db.dialect]
    assert "S3cret-pw" not in db.describe()
    if db.dialect == "mssql":  # unixODBC with FreeTDS unless the URL names another driver
        assert db.url.query["driver"] == "FreeTDS" and db.url.query["TDS_Version"] == "7.4"


def test_every_statement_is_schema_qualified_and_binds_its_values(db):
    tables = {"raw etl", "raw backfill"}
    for name, statement in statements(db).items():
        sql = str(compiled(db, statement))
        schema = "dbo" if name.split(":")[0] in tables else db.schema
        assert re.search(rf"\bFROM {schema}\.\w+", sql), (name, sql)  # schema.table, never a bare table
        assert "LIMIT" not in sql.upper() and "OFFSET" not in sql.upper(), name  # streamed with fetchmany, never paged
        assert "2024-03" not in sql, (name, sql)  # timestamps travel as bound datetimes, never as text
        params = compiled(db, statement).params
        assert all(isinstance(v, datetime) for v in params.values()), (name, params)
        assert len(re.findall(PARAM[db.dialect], sql)) == len(params), (name, sql)


def test_device_reads_filter_and_order_by_the_watermark_column(db):
    sql = str(compiled(db, device_query(GATEWAY, "upload_dt", WINDOW.start)))
    assert re.search(rf"WHERE dbo\.temperature\.upload_dt IS NOT NULL AND dbo\.temperature\.upload_dt >= {PARAM[db.dialect]} "
                     r"ORDER BY dbo\.temperature\.upload_dt$", sql), sql
    missing = str(compiled(db, device_query(GATEWAY, "upload_dt", missing=True)))
    assert missing.endswith("WHERE dbo.temperature.upload_dt IS NULL ORDER BY dbo.temperature.capture_dt")


def test_identifiers_that_need_quotes_get_the_dialects_quotes(db):
    table = device_table("GW.GatewayReadings")
    sql = str(compiled(db, device_query(table, "upload_dt", WINDOW.start)))
    quoted = {"mssql": "[GW].[GatewayReadings]", "oracle": '"GW"."GatewayReadings"'}[db.dialect]
    assert f"FROM {quoted}" in sql, sql


def test_the_hourly_pushdown_is_a_plain_group_by_on_the_same_hour_expression(db):
    sql = str(compiled(db, partial_query(db.engine.dialect, WINDOW)))
    hour = {
        "mssql": f"dateadd(hour, datediff(hour, 0, {db.schema}.temperature_raw.capture_dt), 0)",
        "oracle": f"trunc({db.schema}.temperature_raw.capture_dt, 'HH24')",
    }[db.dialect]
    assert f"{hour} AS hour" in sql  # no bound parameter in it: SELECT and GROUP BY compare equal
    assert sql.endswith(f"GROUP BY {db.schema}.temperature_raw.loc_id, {hour}")
    for measure in ("temperature", "humidity", "pcv_temperature"):
        for stat in ("max", "min", "sum", "count"):
            assert f"{stat}({db.schema}.temperature_raw.{measure}) AS {measure}_{stat}" in sql
