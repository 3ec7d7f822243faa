"""Connections, locks and the shared write paths of every dialect."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import datetime

import polars as pl
from sqlalchemy import (
    Boolean,
    Column,
    DateTime,
    Double,
    Integer,
    MetaData,
    Table,
    func,
    inspect,
    select,
    text,
)
from sqlalchemy.dialects.mysql import insert as mysql_insert
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.engine import URL, make_url
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

from flows.core.errors import database_error
from flows.core.io.sql import pgcopy
from flows.core.schema import (
    SCHEMA_TOKEN,
    etl_watermark,
)
from flows.core.settings import BATCH_ROWS, LOCK_TIMEOUT_S, check_identifier, schema_name

SCHEMA_PARAMETER = "montrg_schema"  # URL query parameter: this database's schema, if not MONTRG_SCHEMA


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


def _literal(value: datetime) -> str:
    """A timestamp literal for SQL text; only ever built from a datetime, never from input text."""
    return f"'{value.isoformat(sep=' ')}'"


async def read_adbc(db: Database, query: str, what: str) -> pl.DataFrame:
    """Run `query` on PostgreSQL through ADBC straight into Polars (Arrow, no Python objects)."""
    uri = db.url.set(drivername="postgresql").render_as_string(hide_password=False)
    try:
        return await asyncio.to_thread(pl.read_database_uri, query, uri, engine="adbc")
    except Exception as exc:  # ADBC errors may quote the URI: never let the password out
        raise database_error(db.describe(), what, exc, db.redact) from None


async def stream_adbc(
    db: Database, query: str, what: str, batch_rows: int, first_rows: int | None = None
) -> AsyncIterator[pl.DataFrame]:
    """Run `query` on PostgreSQL through ADBC and yield its rows as frames of `batch_rows` (the
    first one `first_rows`, the last one shorter), fetching Arrow record batches in a worker
    thread: memory holds about one batch, not the whole result. A small first frame lets the
    caller's pipeline start while the rest is read."""
    import adbc_driver_postgresql.dbapi as adbc
    import pyarrow as pa

    uri = db.url.set(drivername="postgresql").render_as_string(hide_password=False)

    def failed(exc: Exception) -> Exception:  # ADBC errors may quote the URI: never let the password out
        return database_error(db.describe(), what, exc, db.redact)

    def start():
        conn = adbc.connect(uri)
        try:
            cursor = conn.cursor()
            cursor.adbc_statement.set_options(**{"adbc.postgresql.batch_size_hint_bytes": str(4 << 20)})
            cursor.execute(query)
            return conn, cursor, cursor.fetch_record_batch()
        except BaseException:
            conn.close()
            raise

    def next_batch(reader):
        try:
            return reader.read_next_batch()
        except StopIteration:
            return None

    def close(conn, cursor, reader) -> None:
        for closing in (reader, cursor, conn):
            try:
                closing.close()
            except Exception:  # noqa: BLE001 - closing after a failure: the first error is the one to report
                pass

    try:
        conn, cursor, reader = await asyncio.to_thread(start)
    except Exception as exc:
        raise failed(exc) from None
    try:
        pending: list = []
        held = 0
        cut = min(first_rows or batch_rows, batch_rows)
        while True:
            try:
                batch = await asyncio.to_thread(next_batch, reader)
            except Exception as exc:
                raise failed(exc) from None
            if batch is not None:
                pending.append(batch)
                held += batch.num_rows
            while held >= cut or (batch is None and held):
                table = pa.Table.from_batches(pending, reader.schema)
                yield pl.from_arrow(table.slice(0, cut))  # type: ignore[misc]
                rest = table.slice(cut)
                pending, held, cut = rest.to_batches(), rest.num_rows, batch_rows
            if batch is None:
                return
    finally:
        await asyncio.to_thread(close, conn, cursor, reader)


async def _count(conn: AsyncConnection, table: Table) -> int:
    return int((await conn.execute(select(func.count()).select_from(table))).scalar_one())


async def _copy_records(conn: AsyncConnection, table: Table, schema: str | None, df: pl.DataFrame) -> None:
    """COPY `df` into `table` in PostgreSQL's binary format, encoded column-wise off the event loop
    (flows/core/io/sql/pgcopy.py; measured here: 1M raw rows into the indexed temperature_raw
    in 2.0 s as asyncpg records, against 2.7 s as CSV, whose parsing costs the server more)."""
    driver = (await conn.get_raw_connection()).driver_connection
    data = await asyncio.to_thread(pgcopy.encode, table, df)
    if data is None:  # a column type pgcopy does not encode: asyncpg encodes row by row
        await driver.copy_records_to_table(  # type: ignore[union-attr]
            table.name, schema_name=schema, records=df.iter_rows(), columns=df.columns
        )
        return
    await driver.copy_to_table(table.name, schema_name=schema, source=data, columns=df.columns, format="binary")  # type: ignore[union-attr]


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
    await _copy_records(conn, stage, None, df)
    return stage


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
