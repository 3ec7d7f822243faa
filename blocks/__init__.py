"""Create and load the database blocks (prefect-sqlalchemy AsyncSqlAlchemyConnector).

Blocks are saved from a URL split into components, so the password is stored as a secret field
(masked in the UI and the API) rather than inside a plain URL string. The plain driver names are
mapped to the async drivers the flows need: postgresql -> postgresql+asyncpg,
mysql/mariadb -> mysql+asyncmy, sqlite -> sqlite+aiosqlite.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError

# a database's home is flows.core.io.sql.connection, which imports neither Prefect nor the flows
from flows.core.io.sql.connection import SCHEMA_PARAMETER, Database
from flows.core.settings import check_identifier

__all__ = ["async_url", "block_from_url", "create_block", "load_database", "open_database", "BlockNotFound"]

_ASYNC_DRIVERS = {
    "postgresql": "postgresql+asyncpg",
    "postgres": "postgresql+asyncpg",
    "mysql": "mysql+asyncmy",
    "mariadb": "mysql+asyncmy",
    "mariadb+asyncmy": "mysql+asyncmy",
    "mariadb+aiomysql": "mysql+aiomysql",
    "sqlite": "sqlite+aiosqlite",
}
_BLOCK_NAME = re.compile(r"[a-z0-9][a-z0-9-]{0,99}")
_SUPPORTED = {"postgresql+asyncpg", "mysql+asyncmy", "mysql+aiomysql", "sqlite+aiosqlite"}
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
    if credentials:
        raise ValueError(
            f"the URL carries a credential in its query string ({', '.join(k + '=***' for k in credentials)}); "
            "put the password in the user:password part of the URL (it is then stored as a secret)"
        )
    driver = _ASYNC_DRIVERS.get(parsed.drivername, parsed.drivername)
    if driver not in _SUPPORTED:
        raise ValueError(
            f"driver {parsed.drivername!r} is not supported; use one of "
            "postgresql://, mysql:// (MariaDB), sqlite:///"
        )
    return parsed.set(drivername=driver)


def block_from_url(url: str | URL):
    """An unsaved AsyncSqlAlchemyConnector for `url`, the password kept in a secret field."""
    from prefect_sqlalchemy import AsyncSqlAlchemyConnector, ConnectionComponents

    parsed = async_url(url)
    components = ConnectionComponents(
        driver=parsed.drivername,
        username=parsed.username,
        password=parsed.password,
        host=parsed.host,
        port=parsed.port,
        database=parsed.database,
        query=dict(parsed.query) or None,
    )
    return AsyncSqlAlchemyConnector(connection_info=components)


async def create_block(name: str, url: str | URL, overwrite: bool = True, schema: str | None = None) -> str:
    """Save block `name` for `url`; returns the URL with the password hidden, for display.

    `schema` names the schema of the flet_montrg tables in this database when it is not
    MONTRG_SCHEMA (kept as the URL parameter montrg_schema, which the driver never sees).
    """
    if schema is not None:
        url = async_url(url).update_query_dict({SCHEMA_PARAMETER: check_identifier(schema, "--schema")})
    if not _BLOCK_NAME.fullmatch(name):
        raise ValueError(f"block name {name!r} is not valid: lowercase letters, digits and dashes (e.g. pg-fdw-v1-iot)")
    block = block_from_url(url)
    await block.save(name, overwrite=overwrite)
    return async_url(url).render_as_string(hide_password=True)


async def load_database(name: str) -> Database:
    """The Database behind block `name`; raises BlockNotFound naming it when it does not exist."""
    from prefect_sqlalchemy import AsyncSqlAlchemyConnector

    if not isinstance(name, str) or not _BLOCK_NAME.fullmatch(name):
        raise ValueError(f"block name {name!r} is not valid: lowercase letters, digits and dashes (e.g. pg-fdw-v1-iot)")
    try:
        block = await AsyncSqlAlchemyConnector.load(name)
    except ValueError as exc:
        if "Unable to find" not in str(exc):
            raise
        raise BlockNotFound(
            f"database block {name!r} does not exist on this Prefect server; "
            f"create it with: montrg blocks create {name} postgresql://USER:PASSWORD@HOST:PORT/DB"
        ) from None
    return Database.from_url(name, block._rendered_url, connect_args=block.connect_args or {})


@asynccontextmanager
async def open_database(name: str) -> AsyncIterator[Database]:
    """Load block `name` and dispose of its connections on exit."""
    db = await load_database(name)
    try:
        yield db
    finally:
        await db.dispose()
