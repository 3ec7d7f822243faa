"""Hourly aggregates: partial aggregates computed by the source, and the target's hourly rows."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from decimal import Decimal

import polars as pl
from sqlalchemy import (
    DateTime,
    and_,
    delete,
    func,
    literal,
    literal_column,
    select,
    text,
    true,
    tuple_,
)
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.engine import Dialect
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlalchemy.sql import Select

from flows.domain.aggregate import (
    HOURLY_SCHEMA,
    KEY_COLUMNS,
    KEYS,
    PARTIAL_COLUMNS,
    STORED_COLUMNS,
    HourlyPlan,
    decode_key,
    encode_key,
    key_of,
)
from flows.domain.windows import HOUR, Window
from flows.errors import driver_code, sqlstate
from flows.settings import BATCH_ROWS, PUSHDOWN_WORK_MEM
from flows.store.connection import Database, locked_transaction
from flows.store.schema import (
    MEASURES,
    temperature,
    temperature_raw,
)
from flows.store.writes import fetch_frame, unnest_rows, upsert_rows

OVERFLOW = {"22003", "ORA-01426"}  # numeric value out of range
PUSHDOWN_DIALECTS = ("postgresql", "mysql", "mssql", "oracle")  # the sources that aggregate for us


async def read_partial_hourly(db: Database, window: Window) -> pl.DataFrame | None:
    """Per (loc_id, hour): row count, and max, min, sum, count of each measure, computed by the
    source (PostgreSQL, MariaDB, SQL Server, Oracle) so that only a few thousand rows travel instead of millions.

    On PostgreSQL (see partial_query) with work_mem raised for this transaction only, so the
    groups stay in memory instead of spilling sorts to disk, reading by bitmap heap scans (pages in
    physical order) rather than index scans that jump between pages (a day: 0.31 s against 0.70 s
    when measured), and JIT off: compiling costs more than it saves on queries this size.

    Returns None where the source cannot aggregate (SQLite: the caller reads the raw rows), and
    when a sum overflows (SQLSTATE 22003 on PostgreSQL and SQL Server, ORA-01426 on Oracle): some
    raw value is absurd, and the raw rows name it.
    """
    if db.dialect not in PUSHDOWN_DIALECTS:
        return None
    try:
        async with db.engine.begin() as conn:
            if db.dialect == "postgresql":
                await conn.execute(text(f"SET LOCAL work_mem = '{PUSHDOWN_WORK_MEM}'"))
                await conn.execute(text("SET LOCAL enable_indexscan = off"))
                await conn.execute(text("SET LOCAL jit = off"))
                return await fetch_frame(conn, partial_query(conn.dialect, window), _PARTIAL_SCHEMA)
            rows = (await conn.execute(partial_query(conn.dialect, window))).all()
    except DBAPIError as exc:
        if (sqlstate(exc) or driver_code(exc)) not in OVERFLOW:
            raise
        return None
    if any(isinstance(v, Decimal) for row in rows[:1] for v in row):  # a driver's DECIMAL sums (one type per column)
        rows = [[float(v) if isinstance(v, Decimal) else v for v in row] for row in rows]
    return pl.DataFrame(rows, schema=_PARTIAL_SCHEMA, orient="row")


_PARTIAL_SCHEMA = pl.Schema({c: (pl.String if c == "loc_id" else pl.Datetime("us") if c == "hour" else
                                 pl.Int64 if c.endswith("count") else pl.Float64) for c in PARTIAL_COLUMNS})


def partial_query(dialect: Dialect, window: Window) -> Select:
    """The partial aggregate of `window`.

    PostgreSQL: hour by hour (generate_series, and a LATERAL subquery grouped on loc_id alone):
    each hour's bitmap scan feeds a hash table of one entry per location, which stays in the CPU's
    cache, and no hour is computed per row; measured here on a day of 200 locations, 0.44 s
    against 0.53 s grouped on (loc_id, date_bin(hour)) and 0.57 s on date_trunc.
    Elsewhere: plain GROUP BY (loc_id, the hour of capture_dt), the hour written with literals only
    so that SELECT and GROUP BY carry the same expression (SQL Server compares them as text):
    MariaDB TIMESTAMP(DATE(c), MAKETIME(HOUR(c), 0, 0)), SQL Server DATEADD(hour, DATEDIFF(hour, 0, c), 0),
    Oracle TRUNC(c, 'HH24').
    """
    t = temperature_raw
    stats = [func.count().label("sample_count")]
    for m in MEASURES:
        col = t.c[m]
        stats += [func.max(col).label(f"{m}_max"), func.min(col).label(f"{m}_min"),
                  func.sum(col).label(f"{m}_sum"), func.count(col).label(f"{m}_count")]
    if dialect.name == "postgresql":
        one_hour = literal_column("interval '1 hour'")
        hours = func.generate_series(
            literal(window.start, DateTime()), literal(window.end - HOUR, DateTime()), one_hour
        ).table_valued("hour").render_derived(name="hours")  # AS hours(hour)
        per_hour = (
            select(t.c.loc_id, *stats)
            .where(t.c.capture_dt >= hours.c.hour, t.c.capture_dt < hours.c.hour + one_hour)
            .group_by(t.c.loc_id)
            .lateral("per_hour")
        )
        return select(*(hours.c.hour if c == "hour" else per_hour.c[c] for c in PARTIAL_COLUMNS)).select_from(
            hours.join(per_hour, true())
        )
    hour = _hour_of(dialect.name, t.c.capture_dt)
    return (
        select(t.c.loc_id, hour.label("hour"), *stats)
        .where(t.c.capture_dt >= window.start, t.c.capture_dt < window.end)
        .group_by(t.c.loc_id, hour)
    )


def _hour_of(dialect: str, col):
    """`col` truncated to its hour, in `dialect`'s SQL (literals only, no bound parameters)."""
    zero = literal_column("0")
    if dialect == "mssql":
        hour = literal_column("hour")
        return func.dateadd(hour, func.datediff(hour, zero, col), zero)
    if dialect == "oracle":
        return func.trunc(col, literal_column("'HH24'"))
    return func.timestamp(func.date(col), func.maketime(func.hour(col), zero, zero))


def _window_filter(window: Window):
    """The target's rows of `window`: ymd (indexed) bounds, then the exact hour keys."""
    t = temperature
    (lo_day, lo_hh), (hi_day, hi_hh) = key_of(window.start), key_of(window.end - HOUR)
    key = t.c.ymd + t.c.hh
    return and_(t.c.ymd >= lo_day, t.c.ymd <= hi_day, key >= lo_day + lo_hh, key <= hi_day + hi_hh)


async def read_hourly(db: Database, window: Window, conn: AsyncConnection | None = None) -> pl.DataFrame:
    """The target's hourly rows of `window` (STORED_COLUMNS, the hour decoded from ymd and hh)."""
    query = select(*(temperature.c[c] for c in STORED_KEYED)).where(_window_filter(window))
    if conn is None:
        async with db.engine.connect() as own:
            return decode_key(await fetch_frame(own, query, _KEYED_SCHEMA))
    return decode_key(await fetch_frame(conn, query, _KEYED_SCHEMA))


STORED_KEYED = (*KEY_COLUMNS, *STORED_COLUMNS[len(KEYS):])  # as the table holds them: ymd, hh for the hour
_KEYED_SCHEMA = pl.Schema({c: pl.String if c in KEY_COLUMNS else HOURLY_SCHEMA[c] for c in STORED_KEYED})


async def write_hourly(
    db: Database, window: Window, plan: Callable[[pl.DataFrame], HourlyPlan], calc_dt: datetime
) -> tuple[HourlyPlan, pl.DataFrame | None]:
    """Carry out the plan for `window` in one transaction, under the table's write lock: read the
    stored rows, let `plan` (aggregate.plan_hourly with the computed rows) decide, delete its
    `deletes`, upsert its `upserts` stamped with `calc_dt`.

    Returns the plan carried out, and the window's rows as the database holds them after the write
    when the write itself can tell (read_hourly's columns): the rows it left alone, as read under
    the lock, beside the rows the upsert returned (PostgreSQL's RETURNING: the values stored, the
    column types and any trigger applied), so no read-back is needed; None where the upsert cannot
    return its rows (MariaDB, SQLite): the caller reads them back."""
    async with locked_transaction(db, "temperature") as conn:
        before = await read_hourly(db, window, conn)
        decided = plan(before)
        key = tuple_(*(temperature.c[k] for k in KEY_COLUMNS))
        deletes = encode_key(decided.deletes)
        for start in range(0, deletes.height, BATCH_ROWS):
            await conn.execute(delete(temperature).where(key.in_(deletes.slice(start, BATCH_ROWS).rows())))
        touched = pl.concat([decided.upserts.select(KEYS), decided.deletes.select(KEYS)])
        kept = before.join(touched, on=list(KEYS), how="anti")
        if decided.upserts.is_empty():
            return decided, kept
        rows = encode_key(decided.upserts.select(STORED_COLUMNS)).with_columns(calc_dt=pl.lit(calc_dt, dtype=pl.Datetime("us")))
        values = [c for c in rows.columns if c not in KEY_COLUMNS]
        if db.dialect == "postgresql":
            stmt = pg_insert(temperature).from_select(rows.columns, unnest_rows(temperature, rows))
            stmt = stmt.on_conflict_do_update(index_elements=list(KEY_COLUMNS), set_={c: stmt.excluded[c] for c in values})
            returned = await fetch_frame(conn, stmt.returning(*(temperature.c[c] for c in STORED_KEYED)), _KEYED_SCHEMA)
            return decided, pl.concat([kept, decode_key(returned)])
        await upsert_rows(conn, temperature, list(KEY_COLUMNS), rows)
    return decided, None


def horizon_query() -> Select:
    return select(func.min(temperature_raw.c.capture_dt))


async def source_horizon(db: Database) -> datetime | None:
    """The hour of the source's earliest reading (None: it holds none). Before it, the source no
    longer keeps (or never had) readings, so nothing there is judged from their absence."""
    async with db.engine.connect() as conn:
        first = (await conn.execute(horizon_query())).scalar_one()  # a datetime on every dialect (MIN keeps the type)
    return None if first is None else first.replace(minute=0, second=0, microsecond=0)
