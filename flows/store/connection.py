"""Connections: a database behind a block, its schema, table checks and the write lock."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import (
    Table,
    inspect,
    text,
)
from sqlalchemy.engine import URL, make_url
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

from flows.settings import LOCK_TIMEOUT_S, check_identifier, schema_name
from flows.store.schema import SCHEMA_TOKEN

SCHEMA_PARAMETER = "montrg_schema"  # URL query parameter: this database's schema, if not MONTRG_SCHEMA
SOURCE_ONLY = {"mssql": "SQL Server", "oracle": "Oracle"}  # read from (sources), never written to
CONNECT_TIMEOUT_S = 15  # SQL Server (ODBC login timeout) and Oracle (TCP connect timeout)
_CONNECT_DEFAULTS = {"mssql": {"timeout": CONNECT_TIMEOUT_S}, "oracle": {"tcp_connect_timeout": float(CONNECT_TIMEOUT_S)}}


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
        defaults = _CONNECT_DEFAULTS.get(url.get_backend_name(), {})
        engine_kwargs["connect_args"] = {**defaults, **engine_kwargs.get("connect_args", {})}
        engine = create_async_engine(url, pool_pre_ping=True, **engine_kwargs)
        schema = None
        if engine.dialect.name != "sqlite":
            schema = check_identifier(str(override), SCHEMA_PARAMETER) if override else schema_name()
        engine = engine.execution_options(schema_translate_map={SCHEMA_TOKEN: schema})
        return cls(block=block, engine=engine, url=engine.url, schema=schema)

    @property
    def dialect(self) -> str:
        """'postgresql', 'mysql' (MariaDB too), 'sqlite', or for sources 'mssql' or 'oracle'."""
        return self.engine.dialect.name

    def require_writable(self, role: str) -> None:
        """Raise ValueError when this database can only be read (SQL Server, Oracle) and `role` writes."""
        if self.dialect in SOURCE_ONLY:
            raise ValueError(
                f"{self.describe()} is {SOURCE_ONLY[self.dialect]}, which flet-montrg reads from (device table, "
                f"master data, raw readings) but never writes to; {role} must be a PostgreSQL, MariaDB or SQLite block"
            )

    def describe(self) -> str:
        """Block name and where it points, password hidden."""
        return f"block {self.block!r} ({self.url.render_as_string(hide_password=True)})"

    def redact(self, message: str) -> str:
        """`message` with this database's password masked."""
        password = self.url.password
        return message.replace(password, "***") if password else message

    def same_tables(self, other: Database) -> bool:
        """True when `other` reaches the same tables: the same server, database and schema (the
        password aside)."""
        mine, theirs = (db.url.set(password=None).render_as_string(hide_password=False) for db in (self, other))
        return mine == theirs and self.schema == other.schema

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
        if db.dialect in SOURCE_ONLY:  # read by the dialect when it connected
            return f"{SOURCE_ONLY[db.dialect]} {'.'.join(map(str, conn.dialect.server_version_info or ()))}"
        version_sql = {"sqlite": "select sqlite_version()"}.get(db.dialect, "select version()")
        return str((await conn.execute(text(version_sql))).scalar_one())


async def missing_tables(db: Database, tables: Iterable[Table]) -> list[str]:
    """Names of `tables` that do not exist in `db`'s schema."""
    names = [t.name for t in tables]
    async with db.engine.connect() as conn:
        have = await conn.run_sync(lambda c: set(inspect(c).get_table_names(schema=db.schema)))
    return [n for n in names if n not in have]


def timestamp_literal(value: datetime) -> str:
    """A timestamp literal for SQL text; only ever built from a datetime, never from input text."""
    return f"'{value.isoformat(sep=' ')}'"
