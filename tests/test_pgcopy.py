"""The binary COPY encoder, and the array literals of unnest_rows, against a real PostgreSQL: what
arrives equals what was sent, and equals what asyncpg's own row-by-row encoder delivers, for
hostile values of every supported type."""

from __future__ import annotations

import math
from datetime import datetime

import asyncpg
import polars as pl
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import BigInteger, Boolean, Column, Double, Integer, MetaData, SmallInteger, String, Table, Text, insert
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.ext.asyncio import create_async_engine

from flows.store import pgcopy
from flows.store.schema import Timestamp
from flows.store.writes import COPY_SLICE_ROWS, PGCOPY_MIN_ROWS, copy_records, unnest_rows

KINDS = Table(
    "kinds", MetaData(),
    Column("s", String(200)), Column("t", Text), Column("ts", Timestamp), Column("f", Double),
    Column("i", Integer), Column("b", BigInteger), Column("h", SmallInteger), Column("ok", Boolean),
)
SCHEMA = {"s": pl.String, "t": pl.String, "ts": pl.Datetime("us"), "f": pl.Float64,
          "i": pl.Int32, "b": pl.Int64, "h": pl.Int16, "ok": pl.Boolean}
DDL = "CREATE TABLE kinds (s varchar(200), t text, ts timestamp, f float8, i int4, b int8, h int2, ok boolean)"

texts = st.one_of(st.none(), st.text(alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"), max_size=40))
stamps = st.one_of(st.none(), st.datetimes(min_value=datetime(1900, 1, 1), max_value=datetime(2200, 1, 1)))
floats = st.one_of(st.none(), st.floats(allow_nan=True, allow_infinity=True))
rows = st.lists(
    st.tuples(texts, texts, stamps, floats, st.one_of(st.none(), st.integers(-(2**31), 2**31 - 1)),
              st.one_of(st.none(), st.integers(-(2**63), 2**63 - 1)), st.one_of(st.none(), st.integers(-(2**15), 2**15 - 1)),
              st.one_of(st.none(), st.booleans())),
    max_size=30,
)


@pytest.fixture
async def kinds_url(pg_url):
    """The test's database (SQLAlchemy's URL), where `conn` creates the kinds table."""
    return await pg_url()


@pytest.fixture
async def conn(kinds_url):
    c = await asyncpg.connect(kinds_url.replace("postgresql+asyncpg", "postgresql"))
    await c.execute(DDL)
    yield c
    await c.close()


async def insert_unnested(url: str, df: pl.DataFrame) -> None:
    """INSERT ... SELECT FROM unnest_rows(df), as write_hourly sends it (SQLAlchemy, asyncpg)."""
    engine = create_async_engine(url)
    try:
        async with engine.begin() as conn:
            await conn.execute(insert(KINDS).from_select(df.columns, unnest_rows(KINDS, df)))
    finally:
        await engine.dispose()


async def stored(c) -> pl.DataFrame:
    got = await c.fetch("SELECT * FROM kinds ORDER BY ctid")
    return pl.DataFrame([tuple(r) for r in got], schema=SCHEMA, orient="row")


def same(a: pl.DataFrame, b: pl.DataFrame) -> bool:
    """Equal, NaN included (NaN != NaN in Python, but it is the value that was sent)."""
    if a.height != b.height:
        return False
    for x, y in zip(a.iter_rows(), b.iter_rows()):
        for u, v in zip(x, y):
            if isinstance(u, float) and isinstance(v, float) and math.isnan(u) and math.isnan(v):
                continue
            if u != v or (isinstance(u, float) and isinstance(v, float) and math.copysign(1, u) != math.copysign(1, v)):
                return False
    return True


async def test_edge_values_arrive_exactly(conn, kinds_url):
    df = pl.DataFrame(
        [
            ("ünïcødé 😀", "", datetime(1999, 12, 31, 23, 59, 59, 999999), -0.0, -(2**31), 2**63 - 1, -(2**15), True),
            ("'; DROP TABLE kinds; --", "a\tb\nc\\N", datetime(2000, 1, 1), float("nan"), 0, -(2**63), 0, False),
            (None, None, None, None, None, None, None, None),
            ("x" * 200, "long " * 1000, datetime(1970, 1, 1, 0, 0, 0, 1), float("inf"), 2**31 - 1, 0, 2**15 - 1, None),
        ],
        schema=SCHEMA, orient="row",
    )
    await conn.copy_to_table("kinds", source=pgcopy.encode(KINDS, df), columns=df.columns, format="binary")
    assert same(await stored(conn), df)
    await conn.execute("TRUNCATE kinds")
    await insert_unnested(kinds_url, df)
    assert same(await stored(conn), df)


async def test_an_empty_frame_copies_nothing(conn):
    df = pl.DataFrame(schema=SCHEMA)
    await conn.copy_to_table("kinds", source=pgcopy.encode(KINDS, df), columns=df.columns, format="binary")
    assert (await stored(conn)).is_empty()


def test_an_unsupported_column_type_asks_for_the_fallback():
    table = Table("j", MetaData(), Column("doc", JSONB))
    assert pgcopy.encode(table, pl.DataFrame({"doc": ["{}"]})) is None


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(data=rows)
async def test_random_rows_arrive_as_asyncpg_delivers_them(conn, kinds_url, data):
    df = pl.DataFrame(data, schema=SCHEMA, orient="row")
    await conn.execute("TRUNCATE kinds")
    await conn.copy_records_to_table("kinds", records=df.iter_rows(), columns=df.columns)
    by_asyncpg = await stored(conn)
    await conn.execute("TRUNCATE kinds")
    await conn.copy_to_table("kinds", source=pgcopy.encode(KINDS, df), columns=df.columns, format="binary")
    mine = await stored(conn)
    assert same(mine, by_asyncpg) and same(mine, df)
    await conn.execute("TRUNCATE kinds")
    await insert_unnested(kinds_url, df)
    assert same(await stored(conn), by_asyncpg)


def test_a_sliced_frame_encodes_only_its_rows():
    df = pl.DataFrame({"s": [f"row{i}" for i in range(10)]})
    whole, part = pgcopy.encode(KINDS, df), pgcopy.encode(KINDS, df.slice(3, 4))
    assert bytes(part).count(b"row") == 4 and b"row3" in bytes(part) and b"row2" not in bytes(part)
    assert len(bytes(whole)) > len(bytes(part))


async def test_a_large_frame_goes_in_slices_and_arrives_whole(conn, kinds_url):
    """copy_records sends a frame of PGCOPY_MIN_ROWS or more as slices encoded one after the other
    (COPY_SLICE_ROWS each, the last shorter): every row arrives, in order, edge values included;
    a row that breaks a constraint in a later slice still fails the whole COPY and leaves
    nothing behind."""
    height = 2 * COPY_SLICE_ROWS + 123
    assert height >= PGCOPY_MIN_ROWS
    edge = [
        ("ünïcødé 😀", "a\tb\nc\\N", datetime(1999, 12, 31, 23, 59, 59, 999999), -0.0, -(2**31), 2**63 - 1, -(2**15), True),
        (None, None, None, float("nan"), None, None, None, None),
    ]
    df = pl.DataFrame(
        [(f"row{i}", *edge[i % 2][1:4], i, *edge[i % 2][5:]) for i in range(height)], schema=SCHEMA, orient="row"
    )
    engine = create_async_engine(kinds_url)
    try:
        async with engine.begin() as sa:
            await copy_records(sa, KINDS, None, df)
        assert same(await stored(conn), df)
        await conn.execute("TRUNCATE kinds")
        await conn.execute("ALTER TABLE kinds ADD UNIQUE (i)")
        broken = df.with_columns(pl.when(pl.col("i") == height - 1).then(0).otherwise(pl.col("i")).alias("i"))
        with pytest.raises(Exception, match="duplicate key"):
            async with engine.begin() as sa:
                await copy_records(sa, KINDS, None, broken)
        assert (await stored(conn)).is_empty()
    finally:
        await engine.dispose()
