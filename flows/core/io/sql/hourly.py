"""Hourly aggregates: partial aggregates computed by the source, and the target's hourly rows."""

from __future__ import annotations

from dataclasses import dataclass
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

from flows.core.aggregate import KEYS, PARTIAL_COLUMNS, STORED_COLUMNS
from flows.core.errors import driver_code, sqlstate
from flows.core.io.sql.connection import Database, locked_transaction
from flows.core.io.sql.writes import stage_copy, upsert_rows
from flows.core.schema import (
    MEASURES,
    temperature,
    temperature_raw,
)
from flows.core.settings import BATCH_ROWS, PUSHDOWN_WORK_MEM
from flows.core.windows import HOUR, Window

OVERFLOW = {"22003", "ORA-01426"}  # numeric value out of range


async def read_partial_hourly(db: Database, window: Window) -> pl.DataFrame | None:
    """Per (loc_id, hour): row count, and max, min, sum, count of each measure, computed by the
    source (PostgreSQL, MariaDB, SQL Server, Oracle) so that only a few thousand rows travel instead of millions.

    On PostgreSQL (see partial_query) with work_mem raised for this transaction only, so the
    groups stay in memory instead of spilling sorts to disk, reading by bitmap heap scans (pages in
    physical order) rather than index scans that jump between pages (a day: 0.31 s against 0.70 s
    when measured), and JIT off: compiling costs more than it saves on queries this size.

    Returns None when a sum overflows (SQLSTATE 22003 on PostgreSQL and SQL Server, ORA-01426 on
    Oracle): some raw value is absurd, and the caller reads the raw rows, which name it.
    """
    try:
        async with db.engine.begin() as conn:
            if db.dialect == "postgresql":
                await conn.execute(text(f"SET LOCAL work_mem = '{PUSHDOWN_WORK_MEM}'"))
                await conn.execute(text("SET LOCAL enable_indexscan = off"))
                await conn.execute(text("SET LOCAL jit = off"))
            rows = (await conn.execute(partial_query(conn.dialect, window))).all()
    except DBAPIError as exc:
        if (sqlstate(exc) or driver_code(exc)) not in OVERFLOW:
            raise
        return None
    schema = {c: (pl.String if c == "loc_id" else pl.Datetime("us") if c == "hour" else
                  pl.Int64 if c.endswith("count") else pl.Float64) for c in PARTIAL_COLUMNS}
    if any(isinstance(v, Decimal) for row in rows[:1] for v in row):  # a driver's DECIMAL sums (one type per column)
        rows = [[float(v) if isinstance(v, Decimal) else v for v in row] for row in rows]
    return pl.DataFrame(rows, schema=schema, orient="row")


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
    query = select(*(temperature.c[c] for c in STORED_COLUMNS)).where(_window_filter(window))
    if conn is None:
        async with db.engine.connect() as own:
            rows = (await own.execute(query)).all()
    else:
        rows = (await conn.execute(query)).all()
    return pl.DataFrame(rows, schema=hourly_schema(), orient="row")


def hourly_schema() -> pl.Schema:
    return pl.Schema(
        {c: pl.String if c in KEYS else (pl.Int64 if c.endswith("count") else pl.Float64) for c in STORED_COLUMNS}
    )


@dataclass
class UpsertResult:
    inserted: int
    updated: int
    unchanged: int
    removed: int = 0


async def upsert_hourly(
    db: Database,
    hourly: pl.DataFrame,
    window: Window,
    calc_dt: datetime,
    prune_from: datetime | None = None,
    spare: pl.DataFrame | None = None,
) -> UpsertResult:
    """Write `hourly` (rows of `window`) into the target in one transaction.

    Rows whose values already match are left alone (their calc_dt too), so a rerun over the same
    readings changes nothing. With `prune_from`, a target row of an hour at or after it that
    `hourly` no longer has (its readings were all deleted at the source) is removed, unless its
    key is in `spare` (loc_id, ymd, hh: location-hours left out, not recomputed). Rows outside
    the window, and before `prune_from` (hours whose raw readings the source no longer keeps), are
    never touched.
    """
    hourly = hourly.select(STORED_COLUMNS).cast(hourly_schema())  # type: ignore[arg-type]
    async with locked_transaction(db, "temperature") as conn:
        existing = await read_hourly(db, window, conn)
        changed = hourly.join(existing, on=list(STORED_COLUMNS), how="anti", nulls_equal=True)
        n_new = changed.join(existing.select(KEYS), on=list(KEYS), how="anti").height
        stale = existing.select(KEYS).join(hourly.select(KEYS), on=list(KEYS), how="anti")
        if spare is not None:
            stale = stale.join(spare.select(KEYS), on=list(KEYS), how="anti")
        stale = stale.filter((pl.col("ymd") + pl.col("hh")) >= f"{prune_from:%Y%m%d%H}") if prune_from else stale.clear()
        result = UpsertResult(n_new, changed.height - n_new, hourly.height - changed.height, stale.height)
        key = tuple_(*(temperature.c[k] for k in KEYS))
        for start in range(0, stale.height, BATCH_ROWS):
            await conn.execute(delete(temperature).where(key.in_(stale.slice(start, BATCH_ROWS).rows())))
        if changed.is_empty():
            return result
        changed = changed.with_columns(calc_dt=pl.lit(calc_dt, dtype=pl.Datetime("us")))
        values = [c for c in changed.columns if c not in KEYS]
        if db.dialect == "postgresql":
            stage = await stage_copy(conn, "montrg_stage_hourly", temperature, changed)
            stmt = pg_insert(temperature).from_select(changed.columns, select(*stage.c))
            stmt = stmt.on_conflict_do_update(
                index_elements=list(KEYS), set_={c: stmt.excluded[c] for c in values}
            )
            await conn.execute(stmt)
            return result
        await upsert_rows(conn, temperature, list(KEYS), changed)
    return result


def horizon_query() -> Select:
    return select(func.min(temperature_raw.c.capture_dt))


async def source_horizon(db: Database) -> datetime | None:
    """The hour of the source's earliest reading (None: it holds none). Before it, the source no
    longer keeps (or never had) readings, so nothing there is judged from their absence."""
    async with db.engine.connect() as conn:
        first = (await conn.execute(horizon_query())).scalar_one()  # a datetime on every dialect (MIN keeps the type)
    return None if first is None else first.replace(minute=0, second=0, microsecond=0)
