"""Reading raw readings and writing hourly aggregates on PostgreSQL, MariaDB and SQLite.

Fast paths where the dialect has one: PostgreSQL is read through ADBC into Arrow/Polars and written
by COPY into a temporary table followed by one INSERT ... ON CONFLICT. MariaDB and SQLite use their
own upserts through SQLAlchemy. Every write is one transaction.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal

import polars as pl
from sqlalchemy import (
    Boolean,
    Column,
    DateTime,
    Double,
    Integer,
    MetaData,
    Table,
    and_,
    func,
    inspect,
    literal_column,
    or_,
    select,
    text,
    update,
)
from sqlalchemy.dialects.mysql import insert as mysql_insert
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

from flows.core.aggregate import HOURLY_COLUMNS, KEYS, PARTIAL_COLUMNS, RAW_SCHEMA
from flows.core.alerts import ALERT_KEYS
from flows.core.schema import (
    MEASURES,
    SCHEMA_TOKEN,
    alerts,
    etl_watermark,
    sensors,
    temperature,
    temperature_raw,
    temperature_raw_reject,
    thresholds,
)
from flows.core.settings import check_identifier, plant_now, schema_name
from flows.core.windows import HOUR, Window

BATCH_ROWS = 5_000
SCHEMA_PARAMETER = "montrg_schema"  # URL query parameter: this database's schema, if not MONTRG_SCHEMA
LOCK_TIMEOUT_S = 600


class SourceDataError(ValueError):
    """A source row holds a value that cannot be aggregated; the message names it and where."""


@dataclass
class Database:
    """One database reached through a named block: the engine, its dialect and its schema."""

    block: str
    engine: AsyncEngine
    url: URL = field(repr=False)
    schema: str | None = None

    @classmethod
    def from_url(cls, block: str, url: URL | str, **engine_kwargs) -> Database:
        """The database at `url`. Its tables live in MONTRG_SCHEMA, unless the URL names another
        schema with the query parameter `montrg_schema` (e.g. IoT and HQ on one MariaDB server,
        where a schema is a database); that parameter is ours and is not passed to the driver."""
        url = make_url(url) if isinstance(url, str) else url
        override = url.query.get(SCHEMA_PARAMETER)
        url = url.difference_update_query([SCHEMA_PARAMETER])
        engine = create_async_engine(url, pool_pre_ping=True, **engine_kwargs)
        schema = None
        if engine.dialect.name != "sqlite":
            schema = check_identifier(str(override), SCHEMA_PARAMETER) if override else schema_name()
        engine = engine.execution_options(schema_translate_map={SCHEMA_TOKEN: schema})
        return cls(block=block, engine=engine, url=engine.url, schema=schema)

    @property
    def dialect(self) -> str:
        """'postgresql', 'mysql' (MariaDB too) or 'sqlite'."""
        return self.engine.dialect.name

    def describe(self) -> str:
        """Block name and where it points, password hidden."""
        return f"block {self.block!r} ({self.url.render_as_string(hide_password=True)})"

    def redact(self, message: str) -> str:
        """`message` with this database's password masked."""
        password = self.url.password
        return message.replace(password, "***") if password else message

    def qualified(self, table: Table) -> str:
        """`table`'s quoted name in this database, for statements written as text."""
        prep = self.engine.dialect.identifier_preparer
        name = prep.quote(table.name)
        return f"{prep.quote_schema(self.schema)}.{name}" if self.schema else name

    async def dispose(self) -> None:
        await self.engine.dispose()


@asynccontextmanager
async def locked_transaction(db: Database, name: str) -> AsyncIterator[AsyncConnection]:
    """A transaction that holds the database-wide lock `name` while it runs.

    Writers of the same table take the same lock, so two overlapping runs (two hourly runs of the
    same hours, a backfill beside the hourly job, duplicated sensor_collect runs) take turns
    instead of deadlocking on each other's rows. PostgreSQL: a transaction-level advisory lock;
    MariaDB: GET_LOCK, released after the transaction; SQLite has one writer anyway.
    """
    key = f"montrg:{db.schema or 'main'}:{name}"
    async with db.engine.connect() as conn:
        if db.dialect == "mysql":
            got = (await conn.execute(text("SELECT GET_LOCK(:k, :t)"), {"k": key[:64], "t": LOCK_TIMEOUT_S})).scalar()
            await conn.commit()
            if got != 1:
                raise TimeoutError(f"{db.describe()}: lock {key!r} not granted within {LOCK_TIMEOUT_S} s")
        try:
            async with conn.begin():
                if db.dialect == "postgresql":
                    await conn.execute(text("SELECT pg_advisory_xact_lock(hashtext(:k))"), {"k": key})
                yield conn
        finally:
            if db.dialect == "mysql" and not conn.invalidated:
                await conn.execute(text("SELECT RELEASE_LOCK(:k)"), {"k": key[:64]})
                await conn.commit()


async def ping(db: Database) -> str:
    """The server's version string; raises if the database does not answer."""
    async with db.engine.connect() as conn:
        version_sql = {"sqlite": "select sqlite_version()"}.get(db.dialect, "select version()")
        return str((await conn.execute(text(version_sql))).scalar_one())


async def missing_tables(db: Database, tables: Iterable[Table]) -> list[str]:
    """Names of `tables` that do not exist in `db`'s schema."""
    names = [t.name for t in tables]
    async with db.engine.connect() as conn:
        have = await conn.run_sync(lambda c: set(inspect(c).get_table_names(schema=db.schema)))
    return [n for n in names if n not in have]


# ---------------------------------------------------------------- raw readings


async def read_raw(db: Database, window: Window) -> pl.DataFrame:
    """The raw readings with capture_dt in `window`, typed as RAW_SCHEMA.

    Raises SourceDataError naming the row and value when a loosely typed source (SQLite) holds
    a value that is not a number or a timestamp.
    """
    if db.dialect == "postgresql":
        return await _read_raw_adbc(db, window)
    t = temperature_raw
    query = select(t.c.loc_id, t.c.capture_dt, *(t.c[m] for m in MEASURES)).where(
        t.c.capture_dt >= window.start, t.c.capture_dt < window.end
    )
    try:
        async with db.engine.connect() as conn:
            rows = (await conn.execute(query)).all()
    except ValueError as exc:  # the DateTime type could not parse a stored value
        raise SourceDataError(
            f"{db.describe()}: {db.qualified(t)} has a value that is not a timestamp "
            f"in capture_dt within {window}: {exc}"
        ) from None
    return raw_frame(rows, f"{db.describe()}: {db.qualified(t)}")


async def _read_raw_adbc(db: Database, window: Window) -> pl.DataFrame:
    t = temperature_raw
    cols = ", ".join(["loc_id", "capture_dt", *MEASURES])
    query = (
        f"SELECT {cols} FROM {db.qualified(t)} "
        f"WHERE capture_dt >= {_literal(window.start)} AND capture_dt < {_literal(window.end)}"
    )
    df = (await read_adbc(db, query, "reading raw rows")).cast(RAW_SCHEMA)  # type: ignore[arg-type]
    _check_raw(df, f"{db.describe()}: {db.qualified(t)}")
    return df


async def read_partial_hourly(db: Database, window: Window) -> pl.DataFrame:
    """Per (loc_id, hour): row count, and max, min, sum, count of each measure, computed by the
    source (PostgreSQL, MariaDB) so that only a few thousand rows travel instead of millions.

    PostgreSQL groups on date_trunc (a hash aggregate) with work_mem raised for this transaction
    only, so the groups stay in memory instead of spilling sorts to disk, and reads the range by a
    bitmap heap scan (pages in physical order) rather than an index scan that jumps between pages:
    measured here on a day of 200 locations, 0.31 s against 0.70 s.
    """
    t = temperature_raw
    if db.dialect == "postgresql":
        hour = func.date_trunc("hour", t.c.capture_dt)
    else:
        zero = literal_column("0")  # literal, so SELECT and GROUP BY carry the same expression
        hour = func.timestamp(func.date(t.c.capture_dt), func.maketime(func.hour(t.c.capture_dt), zero, zero))
    stats = []
    for m in MEASURES:
        col = t.c[m]
        stats += [func.max(col).label(f"{m}_max"), func.min(col).label(f"{m}_min"),
                  func.sum(col).label(f"{m}_sum"), func.count(col).label(f"{m}_count")]
    query = (
        select(t.c.loc_id, hour.label("hour"), func.count().label("sample_count"), *stats)
        .where(t.c.capture_dt >= window.start, t.c.capture_dt < window.end)
        .group_by(t.c.loc_id, hour)
    )
    async with db.engine.begin() as conn:
        if db.dialect == "postgresql":
            await conn.execute(text("SET LOCAL work_mem = '256MB'"))
            await conn.execute(text("SET LOCAL enable_indexscan = off"))
        rows = (await conn.execute(query)).all()
    schema = {c: (pl.String if c == "loc_id" else pl.Datetime("us") if c == "hour" else
                  pl.Int64 if c.endswith("count") else pl.Float64) for c in PARTIAL_COLUMNS}
    return pl.DataFrame(
        [[float(v) if isinstance(v, Decimal) else v for v in row] for row in rows], schema=schema, orient="row"
    )


def _literal(value: datetime) -> str:
    """A timestamp literal for SQL text; only ever built from a datetime, never from input text."""
    return f"'{value.isoformat(sep=' ')}'"


async def read_adbc(db: Database, query: str, what: str) -> pl.DataFrame:
    """Run `query` on PostgreSQL through ADBC straight into Polars (Arrow, no Python objects)."""
    uri = db.url.set(drivername="postgresql").render_as_string(hide_password=False)
    try:
        return await asyncio.to_thread(pl.read_database_uri, query, uri, engine="adbc")
    except Exception as exc:  # ADBC errors may quote the URI: never let the password out
        raise ConnectionError(f"{db.describe()}: {what} failed: {db.redact(str(exc))}") from None


def raw_frame(rows: Sequence[Sequence[object]], where: str) -> pl.DataFrame:
    """Raw rows (loc_id, capture_dt, measures...) as a typed frame; bad values raise by name."""
    columns = list(zip(*rows)) if rows else [[] for _ in RAW_SCHEMA]
    data = {}
    for name, values in zip(RAW_SCHEMA.names(), columns):
        if name in MEASURES:
            values = [_as_float(v, name, row, where) for v, row in zip(values, rows)]
        data[name] = list(values)
    try:
        df = pl.DataFrame(data, schema=RAW_SCHEMA, strict=True)
    except (TypeError, pl.exceptions.PolarsError) as exc:
        raise SourceDataError(f"{where}: rows of unexpected type: {exc}") from None
    _check_raw(df, where)
    return df


def _as_float(value: object, column: str, row: Sequence[object], where: str) -> float | None:
    if value is None:
        return None
    if isinstance(value, float):
        return value
    if isinstance(value, (int, Decimal)) and not isinstance(value, bool):
        return float(value)
    raise SourceDataError(
        f"{where}: {column}={value!r} ({type(value).__name__}) is not a number, "
        f"at loc_id={row[0]!r}, capture_dt={row[1]!s}"
    )


def _check_raw(df: pl.DataFrame, where: str) -> None:
    from flows.core.validate import bad_raw_values, describe

    bad = bad_raw_values(df)
    if bad.height:
        raise SourceDataError(f"{where}: " + describe(bad, "raw rows cannot be aggregated"))


async def insert_raw(db: Database, df: pl.DataFrame) -> int:
    """Insert readings, skipping any (loc_id, capture_dt) already present; returns rows inserted.

    One transaction: all rows land or none. Re-inserting the same readings changes nothing.
    """
    result = await write_readings(db, df, replace=False)
    return result.written


@dataclass
class WriteResult:
    written: int  # raw rows inserted (or, with replace, inserted or updated)
    rejected: int  # reject rows new to the reject table


async def write_readings(
    db: Database,
    good: pl.DataFrame,
    rejects: pl.DataFrame | None = None,
    replace: bool = False,
    watermark: tuple[str, datetime] | None = None,
) -> WriteResult:
    """In ONE transaction: readings into temperature_raw, rejects into temperature_raw_reject, and
    (optionally) the job's watermark forward, so the watermark never passes an uncommitted load.

    Existing (loc_id, capture_dt) are kept (`replace=False`, at-least-once collection) or
    overwritten (`replace=True`, a later upload corrects a reading). A reject already recorded for
    the same source row is not recorded twice.
    """
    good = good.select(RAW_SCHEMA.names()).cast(RAW_SCHEMA)  # type: ignore[arg-type]
    for m in MEASURES:  # NaN cannot be stored faithfully everywhere; refuse it by name
        if good[m].is_nan().any():
            raise SourceDataError(f"{db.describe()}: {m} holds NaN; store NULL for a missing reading")
    async with locked_transaction(db, "temperature_raw") as conn:
        written = await _write_raw(conn, good, replace, db.schema)
        rejected = 0
        if rejects is not None and rejects.height:
            before = await _count(conn, temperature_raw_reject)
            await _insert_ignoring(conn, temperature_raw_reject, ["source", "row_key"], rejects)
            rejected = await _count(conn, temperature_raw_reject) - before
        if watermark is not None:
            await _extend_watermark(conn, watermark[0], datetime.min, watermark[1], plant_now(), create=True)
    return WriteResult(written, rejected)


async def _write_raw(conn: AsyncConnection, df: pl.DataFrame, replace: bool, schema: str | None) -> int:
    if df.is_empty():
        return 0
    keys = ["loc_id", "capture_dt"]
    if conn.dialect.name == "postgresql":
        if await _copy_if_new(conn, df, schema):
            return df.height
        stage = await _stage_copy(conn, "montrg_stage_raw", temperature_raw, df)
        stmt = pg_insert(temperature_raw).from_select(df.columns, select(*stage.c))
        if replace:
            stmt = stmt.on_conflict_do_update(
                index_elements=keys, set_={m: stmt.excluded[m] for m in MEASURES},
                where=or_(*(temperature_raw.c[m].is_distinct_from(stmt.excluded[m]) for m in MEASURES)),
            )
        else:
            stmt = stmt.on_conflict_do_nothing(index_elements=keys)
        return (await conn.execute(stmt)).rowcount
    before = await _count(conn, temperature_raw)
    if replace:
        await upsert_rows(conn, temperature_raw, keys, df)
    else:
        await _insert_ignoring(conn, temperature_raw, keys, df)
    return await _count(conn, temperature_raw) - before


async def _copy_if_new(conn: AsyncConnection, df: pl.DataFrame, schema: str | None) -> bool:
    """COPY `df` straight into temperature_raw when none of its time range is stored yet.

    The common case of an incremental load; several times faster than staging plus
    INSERT ... ON CONFLICT. The caller holds the table's write lock, so the range cannot fill in
    between; if it did anyway, the savepoint rolls back and the caller stages instead.
    """
    t = temperature_raw
    lo, hi = df["capture_dt"].min(), df["capture_dt"].max()
    taken = (await conn.execute(select(t.c.capture_dt).where(t.c.capture_dt.between(lo, hi)).limit(1))).first()
    if taken is not None:
        return False
    try:
        async with conn.begin_nested():
            await _copy_records(conn, t.name, schema, df)
    except IntegrityError:
        return False
    return True


async def _copy_records(conn: AsyncConnection, table: str, schema: str | None, df: pl.DataFrame) -> None:
    """COPY `df` into `table` in PostgreSQL's binary format (measured here: 1M raw rows into the
    indexed temperature_raw in 2.0 s, against 2.7 s as CSV, whose parsing costs the server more)."""
    raw = await conn.get_raw_connection()
    await raw.driver_connection.copy_records_to_table(  # type: ignore[union-attr]
        table, schema_name=schema, records=df.iter_rows(), columns=df.columns
    )


async def _insert_ignoring(conn: AsyncConnection, table: Table, keys: list[str], rows: pl.DataFrame) -> None:
    """Insert `rows`, skipping those whose `keys` already exist."""
    if conn.dialect.name == "postgresql":
        stmt = pg_insert(table).on_conflict_do_nothing(index_elements=keys)
    elif conn.dialect.name == "sqlite":
        stmt = sqlite_insert(table).on_conflict_do_nothing(index_elements=keys)
    else:
        stmt = mysql_insert(table)
        stmt = stmt.on_duplicate_key_update({keys[0]: stmt.inserted[keys[0]]})
    for batch in rows.iter_slices(BATCH_ROWS):
        await conn.execute(stmt, batch.to_dicts())


async def _count(conn: AsyncConnection, table: Table) -> int:
    return int((await conn.execute(select(func.count()).select_from(table))).scalar_one())


async def _stage_copy(conn: AsyncConnection, name: str, like: Table, df: pl.DataFrame) -> Table:
    """A temporary table (dropped at commit) holding `df`, loaded by COPY (PostgreSQL only)."""
    stage = Table(
        name,
        MetaData(),
        *(Column(c, like.c[c].type) for c in df.columns),
        prefixes=["TEMPORARY"],
        postgresql_on_commit="DROP",
    )
    await conn.run_sync(stage.create)
    await _copy_records(conn, name, None, df)
    return stage


# ---------------------------------------------------------------- hourly aggregates


def _window_filter(window: Window):
    t = temperature
    lo, hi = window.start, window.end - HOUR
    key = t.c.ymd + t.c.hh
    return and_(
        t.c.ymd >= f"{lo:%Y%m%d}",
        t.c.ymd <= f"{hi:%Y%m%d}",
        key >= f"{lo:%Y%m%d%H}",
        key <= f"{hi:%Y%m%d%H}",
    )


async def read_hourly(db: Database, window: Window, conn: AsyncConnection | None = None) -> pl.DataFrame:
    """The target's hourly rows whose (ymd, hh) lies in `window`."""
    query = select(*(temperature.c[c] for c in HOURLY_COLUMNS)).where(_window_filter(window))
    if conn is None:
        async with db.engine.connect() as own:
            rows = (await own.execute(query)).all()
    else:
        rows = (await conn.execute(query)).all()
    return pl.DataFrame(rows, schema=hourly_schema(), orient="row")


def hourly_schema() -> pl.Schema:
    return pl.Schema(
        {c: pl.String if c in KEYS else (pl.Int64 if c.endswith("count") else pl.Float64) for c in HOURLY_COLUMNS}
    )


@dataclass
class UpsertResult:
    inserted: int
    updated: int
    unchanged: int


async def upsert_hourly(db: Database, hourly: pl.DataFrame, window: Window, calc_dt: datetime) -> UpsertResult:
    """Write `hourly` (rows of `window`) into the target in one transaction.

    Rows whose values already match are left alone (their calc_dt too), so a rerun over the same
    readings changes nothing. Rows of the target outside `hourly` are never touched.
    """
    hourly = hourly.cast(hourly_schema())  # type: ignore[arg-type]
    async with locked_transaction(db, "temperature") as conn:
        existing = await read_hourly(db, window, conn)
        changed = hourly.join(existing, on=list(HOURLY_COLUMNS), how="anti", nulls_equal=True)
        n_new = changed.join(existing.select(KEYS), on=list(KEYS), how="anti").height
        result = UpsertResult(n_new, changed.height - n_new, hourly.height - changed.height)
        if changed.is_empty():
            return result
        changed = changed.with_columns(calc_dt=pl.lit(calc_dt, dtype=pl.Datetime("us")))
        values = [c for c in changed.columns if c not in KEYS]
        if db.dialect == "postgresql":
            stage = await _stage_copy(conn, "montrg_stage_hourly", temperature, changed)
            stmt = pg_insert(temperature).from_select(changed.columns, select(*stage.c))
            stmt = stmt.on_conflict_do_update(
                index_elements=list(KEYS), set_={c: stmt.excluded[c] for c in values}
            )
            await conn.execute(stmt)
            return result
        await upsert_rows(conn, temperature, list(KEYS), changed)
    return result


async def upsert_rows(conn: AsyncConnection, table: Table, keys: list[str], rows: pl.DataFrame) -> None:
    """Insert `rows` into `table`, updating the other columns where `keys` already exist.

    SQLAlchemy's dialect upserts (ON CONFLICT / ON DUPLICATE KEY), executed in batches.
    """
    if rows.is_empty():
        return
    values = [c for c in rows.columns if c not in keys]
    if conn.dialect.name == "postgresql":
        stmt = pg_insert(table)
        stmt = stmt.on_conflict_do_update(index_elements=keys, set_={c: stmt.excluded[c] for c in values})
    elif conn.dialect.name == "sqlite":
        stmt = sqlite_insert(table)
        stmt = stmt.on_conflict_do_update(index_elements=keys, set_={c: stmt.excluded[c] for c in values})
    else:
        stmt = mysql_insert(table)
        stmt = stmt.on_duplicate_key_update({c: stmt.inserted[c] for c in values})
    for batch in rows.iter_slices(BATCH_ROWS):
        await conn.execute(stmt, batch.to_dicts())


# ---------------------------------------------------------------- watermark


async def get_watermark(db: Database, job: str) -> datetime | None:
    """The end of the last contiguous window `job` completed, or None if it never ran."""
    t = etl_watermark
    async with db.engine.connect() as conn:
        return (await conn.execute(select(t.c.watermark).where(t.c.job_name == job))).scalar()


async def extend_watermark(
    db: Database, job: str, start: datetime, end: datetime, now: datetime, create: bool = False
) -> datetime | None:
    """Record that [start, end) was processed; returns the stored watermark.

    The watermark is the end of the contiguous processed hours: it moves to `end` only when the
    window touches it (start <= watermark), never backward, and never across a gap. With
    `create`, a job without a watermark gets `end`.
    """
    async with db.engine.begin() as conn:
        return await _extend_watermark(conn, job, start, end, now, create)


async def _extend_watermark(
    conn: AsyncConnection, job: str, start: datetime, end: datetime, now: datetime, create: bool
) -> datetime | None:
    t = etl_watermark
    query = select(t.c.watermark).where(t.c.job_name == job).with_for_update()
    current = (await conn.execute(query)).scalar()
    if current is None:
        if create:
            await conn.execute(t.insert().values(job_name=job, watermark=end, updated_dt=now))
            return end
        return None
    if start <= current < end:
        await conn.execute(t.update().where(t.c.job_name == job).values(watermark=end, updated_dt=now))
        return end
    return current


# ---------------------------------------------------------------- upstream device table and sensors


async def read_device_rows(
    db: Database, table: Table, column: str, after: datetime | None, until: datetime | None
) -> pl.DataFrame:
    """Device rows with after < `column` <= until (either bound may be None), oldest first."""
    if db.dialect == "postgresql":
        where = [f"{column} > {_literal(after)}" if after else "", f"{column} <= {_literal(until)}" if until else ""]
        return await _read_device_adbc(db, table, " AND ".join(w for w in where if w) or "TRUE", column)
    col = table.c[column]
    query = select(*table.c).order_by(col)
    if after is not None:
        query = query.where(col > after)
    if until is not None:
        query = query.where(col <= until)
    async with db.engine.connect() as conn:
        return _device_frame(table, (await conn.execute(query)).all())


async def read_device_range(db: Database, table: Table, start: datetime, end: datetime) -> pl.DataFrame:
    """Device rows with capture_dt in [start, end)."""
    if db.dialect == "postgresql":
        where = f"capture_dt >= {_literal(start)} AND capture_dt < {_literal(end)}"
        return await _read_device_adbc(db, table, where, "capture_dt")
    col = table.c.capture_dt
    async with db.engine.connect() as conn:
        return _device_frame(table, (await conn.execute(select(*table.c).where(col >= start, col < end))).all())


async def _read_device_adbc(db: Database, table: Table, where: str, order: str) -> pl.DataFrame:
    prep = db.engine.dialect.identifier_preparer
    name = prep.quote(table.name) if table.schema is None else f"{prep.quote_schema(table.schema)}.{prep.quote(table.name)}"
    cols = ", ".join(prep.quote(c.name) for c in table.c)
    df = await read_adbc(db, f"SELECT {cols} FROM {name} WHERE {where} ORDER BY {prep.quote(order)}", "reading the device table")
    return df.cast(_device_schema(table))  # type: ignore[arg-type]


def _device_schema(table: Table) -> dict[str, pl.DataType]:
    return {c.name: (pl.Datetime("us") if isinstance(c.type, DateTime) else pl.String) for c in table.c}


def _device_frame(table: Table, rows: Sequence[Sequence[object]]) -> pl.DataFrame:
    """Device rows as text, timestamps kept: values are parsed and validated later, by name."""
    schema = _device_schema(table)
    data = [[None if v is None else (v if isinstance(v, datetime) else str(v)) for v in row] for row in rows]
    return pl.DataFrame(data, schema=schema, orient="row")


async def read_sensors(db: Database) -> pl.DataFrame:
    """The IoT database's sensors: id, location, Modbus endpoint, register map, active flag."""
    cols = ["sensor_id", "loc_id", "host", "port", "device_id", "registers", "is_active"]
    return await read_rows(db, sensors, cols)


# ---------------------------------------------------------------- master data


def polars_schema(table: Table, columns: Sequence[str]) -> pl.Schema:
    """The Polars types of `columns` of `table`."""

    def dtype(column: Column) -> pl.DataType:
        if isinstance(column.type, Boolean):
            return pl.Boolean()
        if isinstance(column.type, Integer):
            return pl.Int64()
        if isinstance(column.type, Double):
            return pl.Float64()
        if isinstance(column.type, DateTime):
            return pl.Datetime("us")
        return pl.String()

    return pl.Schema({c: dtype(table.c[c]) for c in columns})


async def read_rows(db: Database, table: Table, columns: Sequence[str]) -> pl.DataFrame:
    """All rows of `table` (`columns` only), typed by the table's definition."""
    async with db.engine.connect() as conn:
        rows = (await conn.execute(select(*(table.c[c] for c in columns)))).all()
    return pl.DataFrame(rows, schema=polars_schema(table, columns), orient="row")


async def apply_master_changes(db: Database, changes: Sequence, now: datetime) -> None:
    """Apply master-data `changes` (flows.core.master.Changes) in one transaction, in order."""
    async with db.engine.begin() as conn:
        for change in changes:
            table, key = change.table.table, change.table.key
            rows = pl.concat([change.inserts, change.updates])
            await upsert_rows(conn, table, [key], rows.with_columns(upd_dt=pl.lit(now, dtype=pl.Datetime("us"))))
            for start in range(0, len(change.deactivate), BATCH_ROWS):
                keys = change.deactivate[start : start + BATCH_ROWS]
                await conn.execute(
                    update(table).where(table.c[key].in_(keys)).values(is_active=False, upd_dt=now)
                )


# ---------------------------------------------------------------- alerts


async def active_thresholds(db: Database) -> pl.DataFrame:
    """The target's thresholds (all rows; callers filter on is_active)."""
    cols = ["threshold_type", "level", "min_value", "max_value", "loc_id", "is_active"]
    return await read_rows(db, thresholds, cols)


@dataclass
class AlertChanges:
    opened: pl.DataFrame  # new breaches and re-opened ones: one event each
    resolved: int


async def record_alerts(db: Database, breaches: pl.DataFrame, hours: pl.DataFrame, now: datetime) -> AlertChanges:
    """Make the alerts of the evaluated (loc_id, alert_time) `hours` equal `breaches`, in one transaction.

    A breach already recorded is kept once (its values refreshed); a resolved one that breaches
    again is re-opened; an open alert of an evaluated hour that no longer breaches is resolved.
    """
    t = alerts
    keys = list(ALERT_KEYS)
    if hours.is_empty():
        return AlertChanges(breaches.clear(), 0)
    lo, hi = hours["alert_time"].min(), hours["alert_time"].max()
    async with locked_transaction(db, "alerts") as conn:
        rows = (
            await conn.execute(
                select(t.c.alert_id, *(t.c[k] for k in keys), t.c.status)
                .where(t.c.alert_time >= lo, t.c.alert_time <= hi)
                .with_for_update()
            )
        ).all()
        existing = pl.DataFrame(
            rows, schema={"alert_id": pl.Int64, **polars_schema(t, keys), "status": pl.String}, orient="row"
        ).join(hours.select("loc_id", "alert_time"), on=["loc_id", "alert_time"], how="semi")
        new = breaches.join(existing.select(keys), on=keys, how="anti")
        known = breaches.join(existing.select(keys), on=keys, how="semi")
        reopened = known.join(existing.filter(status="resolved").select(keys), on=keys, how="semi")
        gone = existing.filter(status="open").join(breaches.select(keys), on=keys, how="anti")
        await upsert_rows(conn, t, keys, new.with_columns(status=pl.lit("open"), created_dt=pl.lit(now)))
        await upsert_rows(conn, t, keys, known.with_columns(status=pl.lit("open"), resolved_dt=pl.lit(None, pl.Datetime("us"))))
        if gone.height:
            await conn.execute(
                update(t).where(t.c.alert_id.in_(gone["alert_id"].to_list())).values(status="resolved", resolved_dt=now)
            )
    return AlertChanges(pl.concat([new, reopened]), gone.height)
