"""Raw readings: read them (ADBC on PostgreSQL), write them with their rejects, the device table."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

import polars as pl
from asyncpg.exceptions import UniqueViolationError
from sqlalchemy import (
    DateTime,
    Table,
    func,
    or_,
    select,
)
from sqlalchemy import text as sa_text
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlalchemy.sql import Select

from flows.domain.aggregate import RAW_SCHEMA
from flows.domain.windows import Window
from flows.errors import SourceDataError
from flows.settings import plant_now
from flows.store.adbc import read_adbc, stream_adbc
from flows.store.connection import Database, locked_transaction, timestamp_literal
from flows.store.schema import (
    MEASURES,
    sensors,
    temperature_raw,
    temperature_raw_reject,
)
from flows.store.watermarks import extend_watermark_in
from flows.store.writes import copy_records, count_rows, insert_ignoring, read_rows, stage_copy, upsert_rows


def raw_query(window: Window) -> Select:
    """The raw readings with capture_dt in `window`."""
    t = temperature_raw
    return select(t.c.loc_id, t.c.capture_dt, *(t.c[m] for m in MEASURES)).where(
        t.c.capture_dt >= window.start, t.c.capture_dt < window.end
    )


async def read_raw(db: Database, window: Window) -> pl.DataFrame:
    """The raw readings with capture_dt in `window`, typed as RAW_SCHEMA, as stored (the caller
    checks their values: checks.bad_raw_values).

    Raises SourceDataError naming the row and value when a loosely typed source (SQLite) holds
    a value that is not a number or a timestamp.
    """
    if db.dialect == "postgresql":
        return await _read_raw_adbc(db, window)
    t = temperature_raw
    try:
        async with db.engine.connect() as conn:
            rows = (await conn.execute(raw_query(window))).all()
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
        f"WHERE capture_dt >= {timestamp_literal(window.start)} AND capture_dt < {timestamp_literal(window.end)}"
    )
    return (await read_adbc(db, query, "reading raw rows")).cast(RAW_SCHEMA)  # type: ignore[arg-type]


def raw_frame(rows: Sequence[Sequence[object]], where: str) -> pl.DataFrame:
    """Raw rows (loc_id, capture_dt, measures...) as a typed frame; a value that is not a number raises by name."""
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
            before = await count_rows(conn, temperature_raw_reject)
            await insert_ignoring(conn, temperature_raw_reject, ["source", "row_key"], rejects)
            rejected = await count_rows(conn, temperature_raw_reject) - before
        if watermark is not None:
            await extend_watermark_in(conn, watermark[0], datetime.min, watermark[1], plant_now(), create=True)
    return WriteResult(written, rejected)


async def _write_raw(conn: AsyncConnection, df: pl.DataFrame, replace: bool, schema: str | None) -> int:
    if df.is_empty():
        return 0
    keys = ["loc_id", "capture_dt"]
    if conn.dialect.name == "postgresql":
        if await _copy_if_new(conn, df, schema):
            return df.height
        # the batch overlaps stored readings (a re-read, re-uploads): what lies after the latest
        # stored reading cannot collide and is copied straight in; only the rest is staged and
        # upserted (steady state: most of a batch is new, a fraction re-read)
        latest = (await conn.execute(select(func.max(temperature_raw.c.capture_dt)))).scalar()
        copied = 0
        if latest is not None:
            fresh = df.filter(pl.col("capture_dt") > latest)
            if fresh.height and await _copy_in_savepoint(conn, fresh, schema):
                copied, df = fresh.height, df.filter(pl.col("capture_dt") <= latest)
        if df.is_empty():
            return copied
        stage = await stage_copy(conn, "montrg_stage_raw", temperature_raw, df)
        stmt = pg_insert(temperature_raw).from_select(df.columns, select(*stage.c))
        if replace:
            stmt = stmt.on_conflict_do_update(
                index_elements=keys, set_={m: stmt.excluded[m] for m in MEASURES},
                where=or_(*(temperature_raw.c[m].is_distinct_from(stmt.excluded[m]) for m in MEASURES)),
            )
        else:
            stmt = stmt.on_conflict_do_nothing(index_elements=keys)
        return copied + (await conn.execute(stmt)).rowcount
    before = await count_rows(conn, temperature_raw)
    if replace:
        await upsert_rows(conn, temperature_raw, keys, df)
    else:
        await insert_ignoring(conn, temperature_raw, keys, df)
    return await count_rows(conn, temperature_raw) - before


async def _copy_if_new(conn: AsyncConnection, df: pl.DataFrame, schema: str | None) -> bool:
    """COPY `df` straight into temperature_raw when none of its time range is stored yet.

    The common case of an incremental load; several times faster than staging plus
    INSERT ... ON CONFLICT. The caller holds the table's write lock, so the range cannot fill in
    between; if it did anyway, the savepoint rolls back and the caller stages instead.
    """
    t = temperature_raw
    lo, hi = df["capture_dt"].min(), df["capture_dt"].max()
    taken = (await conn.execute(select(t.c.capture_dt).where(t.c.capture_dt.between(lo, hi)).limit(1))).first()
    return taken is None and await _copy_in_savepoint(conn, df, schema)


async def _copy_in_savepoint(conn: AsyncConnection, df: pl.DataFrame, schema: str | None) -> bool:
    """COPY `df` into temperature_raw in a savepoint; False (rolled back) when a row collides."""
    try:
        async with conn.begin_nested():
            await copy_records(conn, temperature_raw, schema, df)
    except (IntegrityError, UniqueViolationError):  # the raw driver's error: COPY bypasses SQLAlchemy's wrapping
        return False
    return True


def device_query(
    table: Table, column: str, after: datetime | None = None, until: datetime | None = None, missing: bool = False
) -> Select:
    """The device rows with after <= `column` <= until (either bound may be None), oldest first;
    `missing`: the rows whose `column` is NULL instead (ordered by capture_dt)."""
    col = table.c[column]
    if missing:
        return select(*table.c).where(col.is_(None)).order_by(table.c.capture_dt)
    bounds = [c for c in (col >= after if after else None, col <= until if until else None) if c is not None]
    return select(*table.c).where(col.is_not(None), *bounds).order_by(col)


def device_range_query(table: Table, start: datetime, end: datetime) -> Select:
    """The device rows with capture_dt in [start, end), oldest first."""
    col = table.c.capture_dt
    return select(*table.c).where(col >= start, col < end).order_by(col)


def iter_device_rows(
    db: Database, table: Table, column: str, after: datetime | None, until: datetime | None,
    batch_rows: int, first_rows: int | None = None, missing: bool = False,
) -> AsyncIterator[pl.DataFrame]:
    """Device rows of device_query, as frames of `batch_rows` rows (the first of `first_rows`) read
    one after the other (one query, streamed). `after` is inclusive: rows tied with the watermark
    are read again (loading them again changes nothing), so no tie across a batch boundary is ever
    skipped."""
    return _iter_device(db, table, device_query(table, column, after, until, missing), batch_rows, first_rows)


async def read_device_range(db: Database, table: Table, start: datetime, end: datetime) -> pl.DataFrame:
    """Device rows with capture_dt in [start, end), oldest first."""
    batches = [b async for b in _iter_device(db, table, device_range_query(table, start, end), batch_rows=1_000_000)]
    return pl.concat(batches) if batches else _device_frame(table, [])


async def _iter_device(
    db: Database, table: Table, query: Select, batch_rows: int, first_rows: int | None = None
) -> AsyncIterator[pl.DataFrame]:
    """One query, streamed: through ADBC straight into Polars on PostgreSQL, SQLAlchemy elsewhere
    (a server-side cursor read by fetchmany: no LIMIT/OFFSET paging, on any dialect)."""
    if db.dialect == "postgresql":  # bound values are datetimes only: rendered as literals by the dialect
        text = str(query.compile(dialect=db.engine.dialect, compile_kwargs={"literal_binds": True}))
        schema = _device_schema(table)
        async for batch in stream_adbc(db, text, "reading the device table", batch_rows, first_rows):
            yield batch.cast(schema)  # type: ignore[arg-type]
        return
    async with db.engine.connect() as conn:
        result = await conn.stream(query)
        size = min(first_rows or batch_rows, batch_rows)
        while rows := await result.fetchmany(size):
            yield _device_frame(table, rows)
            size = batch_rows


def _device_schema(table: Table) -> dict[str, pl.DataType]:
    return {c.name: (pl.Datetime("us") if isinstance(c.type, DateTime) else pl.String) for c in table.c}


def _device_frame(table: Table, rows: Sequence[Sequence[object]]) -> pl.DataFrame:
    """Device rows as text, timestamps kept: values are parsed and checked later, by name."""
    schema = _device_schema(table)
    data = [[None if v is None else (v if isinstance(v, datetime) else str(v)) for v in row] for row in rows]
    return pl.DataFrame(data, schema=schema, orient="row")


async def read_sensors(db: Database) -> pl.DataFrame:
    """The IoT database's sensors: id, location, Modbus endpoint, register map, active flag."""
    cols = ["sensor_id", "loc_id", "host", "port", "device_id", "registers", "is_active"]
    return await read_rows(db, sensors, cols)


async def estimate_raw_rows(db: Database, window: Window) -> int:
    """About how many readings `window` holds: the planner's estimate on PostgreSQL and MariaDB
    (EXPLAIN, no row read), a COUNT(*) over the capture_dt index elsewhere."""
    where = (temperature_raw.c.capture_dt >= window.start, temperature_raw.c.capture_dt < window.end)
    async with db.engine.connect() as conn:
        if db.dialect not in ("postgresql", "mysql"):
            return int((await conn.execute(select(func.count()).select_from(temperature_raw).where(*where))).scalar_one())
        compiled = (
            f"SELECT 1 FROM {db.qualified(temperature_raw)} "
            f"WHERE capture_dt >= {timestamp_literal(window.start)} AND capture_dt < {timestamp_literal(window.end)}"
        )
        if db.dialect == "postgresql":
            plan = (await conn.execute(sa_text(f"EXPLAIN (FORMAT JSON) {compiled}"))).scalar_one()
            return int((json.loads(plan) if isinstance(plan, str) else plan)[0]["Plan"]["Plan Rows"])
        rows = (await conn.execute(sa_text(f"EXPLAIN {compiled}"))).mappings().all()
        return int(sum(int(r.get("rows") or 0) for r in rows))
