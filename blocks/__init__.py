"""Create and load the database blocks (prefect-sqlalchemy AsyncSqlAlchemyConnector).

Blocks are saved from a URL split into components, so the password is stored as a secret field
(masked in the UI and the API) rather than inside a plain URL string. The plain driver names are
mapped to the async drivers the flows need: postgresql -> postgresql+asyncpg,
mysql/mariadb -> mysql+asyncmy, sqlite -> sqlite+aiosqlite, and for sources only
oracle -> oracle+oracledb_async (thin mode, no Oracle client) and mssql -> mssql+aioodbc (unixODBC
with FreeTDS unless the URL names another ODBC driver).

prefect-sqlalchemy's AsyncSqlAlchemyConnector accepts only the async drivers it lists, and SQL
Server is not one of them; so a SQL Server block is a SqlAlchemyConnector with the driver
mssql+pyodbc (the same connection components, the password just as secret), which load_database
opens with mssql+aioodbc: aioodbc runs that same pyodbc connection off the event loop.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError

from flows.settings import check_identifier

# a database's home is flows.store.connection, which imports neither Prefect nor the flows
from flows.store.connection import SCHEMA_PARAMETER, Database

__all__ = ["async_url", "block_from_url", "create_block", "load_database", "open_database", "BlockNotFound"]

_ASYNC_DRIVERS = {
    "postgresql": "postgresql+asyncpg",
    "postgres": "postgresql+asyncpg",
    "mysql": "mysql+asyncmy",
    "mariadb": "mysql+asyncmy",
    "mariadb+asyncmy": "mysql+asyncmy",
    "mariadb+aiomysql": "mysql+aiomysql",
    "sqlite": "sqlite+aiosqlite",
    "mssql": "mssql+aioodbc",
    "sqlserver": "mssql+aioodbc",
    "mssql+pyodbc": "mssql+aioodbc",
    "oracle": "oracle+oracledb_async",
    "oracle+oracledb": "oracle+oracledb_async",
}
_SYNC_BLOCK_DRIVERS = {"mssql+aioodbc": "mssql+pyodbc"}  # async driver -> the SqlAlchemyConnector's driver
_BLOCK_NAME = re.compile(r"[a-z0-9][a-z0-9-]{0,99}")
_SUPPORTED = {"postgresql+asyncpg", "mysql+asyncmy", "mysql+aiomysql", "sqlite+aiosqlite", "mssql+aioodbc", "oracle+oracledb_async"}
# SQL Server through unixODBC: FreeTDS (Debian's tdsodbc) unless the URL says ?driver=...; TDS 7.4
# is SQL Server 2012 and later. Microsoft's own driver: ?driver=ODBC+Driver+18+for+SQL+Server
MSSQL_DEFAULTS = {"driver": "FreeTDS", "TDS_Version": "7.4"}
# query parameters the drivers read as credentials: refused, so a password only ever lives in the
# block's secret field (the query string is a plain field, shown in the UI and in every log line)
CREDENTIAL_PARAMETERS = {"password", "pass", "passwd", "pwd", "sslpassword", "passfile", "sslkey_password", "ssl_key_password"}


class BlockNotFound(LookupError):
    """No database block of that name exists on the Prefect server."""


def async_url(url: str | URL) -> URL:
    """`url` with its driver mapped to the async one; raises ValueError for unsupported ones, and
    for credentials anywhere but the user:password part (the message never repeats them)."""
    if isinstance(url, str):
        authority = url.split("?", 1)[0].split("://", 1)[-1]
        if authority.count("@") > 1:
            raise ValueError(
                "the URL has more than one '@' before the host, so where the password ends is ambiguous; "
                "write '@' in the password as %40 (':' as %3A, '/' as %2F)"
            )
    try:
        parsed = make_url(url) if isinstance(url, str) else url
    except (ArgumentError, ValueError):  # their messages quote the URL, password included
        raise ValueError("not a database URL (expected e.g. postgresql://user:password@host:5432/db)") from None
    credentials = sorted(k for k in parsed.query if k.lower() in CREDENTIAL_PARAMETERS)
    if "pwd=" in str(parsed.query.get("odbc_connect", "")).lower().replace(" ", ""):
        credentials.append("odbc_connect")
    if credentials:
        raise ValueError(
            f"the URL carries a credential in its query string ({', '.join(k + '=***' for k in credentials)}); "
            "put the password in the user:password part of the URL (it is then stored as a secret)"
        )
    _check_parts(parsed)
    driver = _ASYNC_DRIVERS.get(parsed.drivername, parsed.drivername)
    if driver not in _SUPPORTED:
        raise ValueError(
            f"driver {parsed.drivername!r} is not supported; use one of "
            "postgresql://, mysql:// (MariaDB), sqlite:///, and as sources mssql:// (SQL Server), oracle://"
        )
    if driver == "mssql+aioodbc" and "odbc_connect" not in parsed.query:
        parsed = parsed.update_query_dict({k: v for k, v in MSSQL_DEFAULTS.items() if k not in parsed.query})
    return parsed.set(drivername=driver)


_HOST = re.compile(r"[A-Za-z0-9]([A-Za-z0-9._-]{0,252})|[0-9A-Fa-f:.]+(%[A-Za-z0-9]+)?")


def _check_parts(parsed: URL) -> None:
    """The URL's host, port and database are ones a server can have (checked before any block is
    saved: a port of 99999 would otherwise surface as an OverflowError at the first connect)."""
    backend = parsed.get_backend_name()
    if backend == "sqlite":
        if not parsed.database:
            raise ValueError("the sqlite URL names no file (expected sqlite:///path/to/file.db)")
        return
    if parsed.host is None and not {"host", "unix_socket"} & set(parsed.query):
        raise ValueError(f"the URL names no host (expected e.g. {backend}://user:password@host:port/database)")
    if parsed.host is not None and not _HOST.fullmatch(parsed.host):
        raise ValueError(f"host {parsed.host!r} is not a host name or an IP address")
    if parsed.port is not None and not 1 <= parsed.port <= 65535:
        raise ValueError(f"port {parsed.port} is not a TCP port (1..65535)")
    if backend in ("postgresql", "mysql", "mariadb", "mssql") and not parsed.database:
        raise ValueError(f"the URL names no database (expected {backend}://user:password@host:port/database)")


def block_from_url(url: str | URL):
    """An unsaved AsyncSqlAlchemyConnector for `url` (SqlAlchemyConnector for SQL Server), the
    password kept in a secret field."""
    from prefect_sqlalchemy import AsyncSqlAlchemyConnector, ConnectionComponents, SqlAlchemyConnector

    parsed = async_url(url)
    sync_driver = _SYNC_BLOCK_DRIVERS.get(parsed.drivername)
    components = ConnectionComponents(
        driver=sync_driver or parsed.drivername,
        username=parsed.username,
        password=parsed.password,
        host=parsed.host,
        port=parsed.port,
        database=parsed.database,
        query=dict(parsed.query) or None,
    )
    return (SqlAlchemyConnector if sync_driver else AsyncSqlAlchemyConnector)(connection_info=components)


async def check_block_url(name: str, url: str | URL, schema: str | None = None) -> str:
    """Connect once to `url` (as block `name` would) and return the server's version; raises
    ValueError naming the block and the URL (password hidden) with why it failed and the fixes."""
    from flows.errors import is_transient
    from flows.store.connection import ping

    parsed = async_url(url)
    if schema is not None:
        parsed = parsed.update_query_dict({SCHEMA_PARAMETER: check_identifier(schema, "--schema")})
    shown = parsed.render_as_string(hide_password=True)
    try:
        db = Database.from_url(name, parsed)
    except Exception as exc:  # e.g. the ODBC driver manager is not installed
        raise ValueError(f"block {name!r} was not saved: {shown} cannot be opened here: {exc}") from None
    try:
        return (await ping(db)).split(" on ")[0].split(",")[0]
    except Exception as exc:
        reason = db.redact(" ".join(str(getattr(exc, "orig", None) or exc).split()))[:300] or type(exc).__name__
        what = "does not answer" if is_transient(exc) else "refused the connection"
        raise ValueError(
            f"block {name!r} was not saved: {shown} {what} ({reason}); check the host, port, database, "
            "user and password, or save it anyway with --no-check"
        ) from None
    finally:
        await db.dispose()


async def create_block(name: str, url: str | URL, overwrite: bool = True, schema: str | None = None) -> str:
    """Save block `name` for `url`; returns the URL with the password hidden, for display.

    `schema` names the schema of the flet_montrg tables in this database when it is not
    MONTRG_SCHEMA (kept as the URL parameter montrg_schema, which the driver never sees).
    """
    if schema is not None:
        url = async_url(url).update_query_dict({SCHEMA_PARAMETER: check_identifier(schema, "--schema")})
    if not _BLOCK_NAME.fullmatch(name):
        raise ValueError(f"block name {name!r} is not valid: lowercase letters, digits and dashes (e.g. pg-fdw-v1-iot)")
    from prefect_sqlalchemy import AsyncSqlAlchemyConnector, SqlAlchemyConnector

    block = block_from_url(url)
    other = SqlAlchemyConnector if isinstance(block, AsyncSqlAlchemyConnector) else AsyncSqlAlchemyConnector
    replaced = await _load(other, name) is not None  # the same name, the other kind of block (SQL Server <-> the rest)
    if replaced and not overwrite:
        raise ValueError(f"block {name!r} already exists; leave out --no-overwrite to replace it")
    await _save(block, name, overwrite)
    if replaced:
        await other.adelete(name)
    return async_url(url).render_as_string(hide_password=True)


async def _save(block, name: str, overwrite: bool) -> None:
    """`block.save`, once more when another `montrg blocks create` registered the block type or
    schema on a new server between this one's read and create (Prefect answers 409 to the second)."""
    from prefect.exceptions import ObjectAlreadyExists

    try:
        await block.save(name, overwrite=overwrite)
    except ObjectAlreadyExists:  # registration lost the race; it reads what the other registered now
        await block.save(name, overwrite=overwrite)


async def _load(kind, name: str):
    """Block `name` of block class `kind`, or None when the server has none of that kind and name."""
    try:
        return await kind.aload(name)
    except ValueError as exc:
        if "Unable to find" not in str(exc):
            raise
        return None


async def load_database(name: str) -> Database:
    """The Database behind block `name`; raises BlockNotFound naming it when it does not exist."""
    from prefect_sqlalchemy import AsyncSqlAlchemyConnector, SqlAlchemyConnector

    if not isinstance(name, str) or not _BLOCK_NAME.fullmatch(name):
        raise ValueError(f"block name {name!r} is not valid: lowercase letters, digits and dashes (e.g. pg-fdw-v1-iot)")
    for kind in (AsyncSqlAlchemyConnector, SqlAlchemyConnector):  # the second: SQL Server (see above)
        block = await _load(kind, name)
        if block is None:
            continue
        url = block._rendered_url
        if kind is SqlAlchemyConnector:
            url = async_url(url)  # mssql+pyodbc -> mssql+aioodbc; any other sync driver is refused, named
        return Database.from_url(name, url, connect_args=block.connect_args or {})
    raise BlockNotFound(
        f"database block {name!r} does not exist on this Prefect server; "
        f"create it with: montrg blocks create {name} postgresql://USER:PASSWORD@HOST:PORT/DB"
    )


@asynccontextmanager
async def open_database(name: str) -> AsyncIterator[Database]:
    """Load block `name` and dispose of its connections on exit."""
    db = await load_database(name)
    try:
        yield db
    finally:
        await db.dispose()
