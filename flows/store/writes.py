"""The write paths every dialect shares: COPY and staging (PostgreSQL), upserts and inserts that
skip existing keys (every dialect), and plain typed reads of a table."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence

import polars as pl
from sqlalchemy import (
    Boolean,
    Column,
    DateTime,
    Double,
    Integer,
    MetaData,
    Table,
    Text,
    cast,
    func,
    literal,
    select,
)
from sqlalchemy.dialects.mysql import insert as mysql_insert
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlalchemy.sql import Select
from sqlalchemy.sql.dml import Insert

from flows.settings import BATCH_ROWS
from flows.store.connection import Database

PGCOPY_MIN_ROWS = 20_000
COPY_SLICE_ROWS = 16_384


async def fetch_frame(conn: AsyncConnection, query: Select | Insert, schema: pl.Schema) -> pl.DataFrame:
    """The rows of `query` (a SELECT, or an INSERT ... RETURNING) as a frame of `schema`, whose
    names are the query's columns.

    On PostgreSQL as one row of arrays: `SELECT array_agg(c1), array_agg(c2), ... FROM (query)`,
    every array_agg fed the same rows in the same order by one aggregate pass, so the arrays line
    up; asyncpg decodes them in C and no Python row object is built (with unnest_rows, the 10M
    backfill's work went from 2.84-3.70 s to 2.65-3.17 s, alternating runs, docs/performance.md).
    Elsewhere row by row."""
    if conn.dialect.name != "postgresql":
        return pl.DataFrame((await conn.execute(query)).all(), schema=schema, orient="row")
    rows = query.cte("fetched") if isinstance(query, Insert) else query.subquery("fetched")
    arrays = (await conn.execute(select(*(func.array_agg(rows.c[name]) for name in schema)).select_from(rows))).one()
    if arrays[0] is None:  # no rows: array_agg of nothing is NULL
        return pl.DataFrame(schema=schema)
    return pl.DataFrame(dict(zip(schema, arrays)), schema=schema)


def unnest_rows(table: Table, df: pl.DataFrame) -> Select:
    """`df` as a SELECT of its columns from `unnest(array, array, ...)` (PostgreSQL): the rows go in
    a single statement, without the temporary table, COPY and INSERT ... SELECT a staging costs
    (three round trips and catalog writes). Each column is one text parameter, PostgreSQL's array
    literal of its values (array_literal), cast to the column's array type: a list parameter
    would have asyncpg test every element against collections.abc.Iterable before encoding it
    (0.14 s of a 10M backfill's writes, on the event loop)."""
    arrays = [cast(literal(array_literal(df[c]), Text()), ARRAY(table.c[c].type)) for c in df.columns]
    rows = func.unnest(*arrays).table_valued(*df.columns).render_derived(name="rows")
    return select(*(rows.c[c] for c in df.columns))


def array_literal(values: pl.Series) -> str:
    """`values` as PostgreSQL's array literal, `{1.5,NULL,"a \\"b\\""}`: NULL for a null, numbers as
    Polars writes them (the shortest text that reads back to the same float: NaN, inf and -inf
    included), anything else double-quoted with its backslashes and quotes escaped."""
    text = values.cast(pl.String)
    if not values.dtype.is_numeric():
        text = '"' + text.str.replace_all("\\", "\\\\", literal=True).str.replace_all('"', '\\"', literal=True) + '"'
    return "{" + (text.fill_null("NULL").str.join(",").item() or "") + "}"


async def count_rows(conn: AsyncConnection, table: Table) -> int:
    return int((await conn.execute(select(func.count()).select_from(table))).scalar_one())


async def copy_records(conn: AsyncConnection, table: Table, schema: str | None, df: pl.DataFrame) -> None:
    """COPY `df` into `table` in PostgreSQL's binary format, encoded column-wise off the event loop
    (flows/store/pgcopy.py; measured here: 1M raw rows into the indexed temperature_raw
    in 2.0 s as asyncpg records, against 2.7 s as CSV, whose parsing costs the server more).

    The rows go in slices of COPY_SLICE_ROWS, each encoded in a worker thread while PostgreSQL
    stores the one before: the COPY starts after the first slice is encoded, not the whole frame
    (a 100k-row batch of the raw load: 50-70 ms sooner), and the encoded bytes held are one slice's.

    Frames under PGCOPY_MIN_ROWS (a chunk's hourly rows, a sensor cycle) go as asyncpg records:
    encoding them costs milliseconds, and pgcopy's NumPy and Arrow are then never imported (about
    0.2 s of every hourly or backfill run's start-up)."""
    driver = (await conn.get_raw_connection()).driver_connection
    encoders = None
    if df.height >= PGCOPY_MIN_ROWS:
        from flows.store import pgcopy

        encoders = pgcopy.encoders(table, df.columns)
    if encoders is None:  # a column type pgcopy does not encode: asyncpg encodes row by row
        await driver.copy_records_to_table(  # type: ignore[union-attr]
            table.name, schema_name=schema, records=df.iter_rows(), columns=df.columns
        )
        return

    async def pieces() -> AsyncIterator[bytes | memoryview]:
        yield pgcopy.HEADER
        for start in range(0, df.height, COPY_SLICE_ROWS):
            yield await asyncio.to_thread(pgcopy.encode_rows, encoders, df.slice(start, COPY_SLICE_ROWS))
        yield pgcopy.TRAILER

    await driver.copy_to_table(table.name, schema_name=schema, source=pieces(), columns=df.columns, format="binary")  # type: ignore[union-attr]


async def stage_copy(conn: AsyncConnection, name: str, like: Table, df: pl.DataFrame) -> Table:
    """A temporary table (dropped at commit) holding `df`, loaded by COPY (PostgreSQL only)."""
    stage = Table(
        name,
        MetaData(),
        *(Column(c, like.c[c].type) for c in df.columns),
        prefixes=["TEMPORARY"],
        postgresql_on_commit="DROP",
    )
    await conn.run_sync(stage.create)
    await copy_records(conn, stage, None, df)
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


async def insert_ignoring(conn: AsyncConnection, table: Table, keys: list[str], rows: pl.DataFrame) -> None:
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


def rows_query(table: Table, columns: Sequence[str]) -> Select:
    """All rows of `table`, `columns` only."""
    return select(*(table.c[c] for c in columns))


async def read_rows(db: Database, table: Table, columns: Sequence[str]) -> pl.DataFrame:
    """All rows of `table` (`columns` only), typed by the table's definition."""
    async with db.engine.connect() as conn:
        rows = (await conn.execute(rows_query(table, columns))).all()
    return pl.DataFrame(rows, schema=polars_schema(table, columns), orient="row")
