"""Real-service fixtures: a local Prefect server, PostgreSQL, MariaDB and SQLite databases.

Each database fixture creates a database (or MariaDB schema) of its own, yields it, and drops it
in `finally`. PostgreSQL and MariaDB are the machine's own (127.0.0.1:5432, 127.0.0.1:3306).
"""

from __future__ import annotations

import os

# Before anything imports flows: the tasks read their retry delay when they are defined.
os.environ.setdefault("MONTRG_RETRY_BACKOFF_S", "0.2")  # retries in tests: quick, but real

from collections.abc import AsyncIterator, Callable  # noqa: E402

import pytest  # noqa: E402
from sqlalchemy import text  # noqa: E402
from sqlalchemy.ext.asyncio import create_async_engine  # noqa: E402

import flows.pipelines  # noqa: E402,F401 - sets Prefect's local defaults (flows.settings) before Prefect loads
from tests.helpers import Db, make_db, unique  # noqa: E402

PG_ADMIN_URL = os.environ.get("MONTRG_TEST_PG_URL", "postgresql+asyncpg://postgres@127.0.0.1:5432/postgres")
MARIADB_URL = os.environ.get("MONTRG_TEST_MARIADB_URL", "mysql+asyncmy://root@127.0.0.1:3306/test")


@pytest.fixture(scope="session")
def prefect_server():
    """One real local Prefect server for the whole session (blocks, flow runs, artifacts)."""
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=120):
        yield


@pytest.fixture(autouse=True)
def _prefect_unless_pure(request):
    """Every test gets the session's Prefect server but the pure ones of tests/pure/, which need
    no service and run in a second: `pytest tests/pure`."""
    if request.node.path.parent.name != "pure":
        request.getfixturevalue("prefect_server")


@pytest.fixture(scope="session")
def prefect_env(prefect_server) -> dict[str, str]:
    """Environment for a subprocess (the montrg CLI) to reach the test Prefect server."""
    from prefect.settings import PREFECT_API_URL

    return {**os.environ, "PREFECT_API_URL": str(PREFECT_API_URL.value())}


@pytest.fixture
async def pg_url() -> AsyncIterator[Callable[[], str]]:
    """Factory: a fresh PostgreSQL database per call, as an asyncpg URL; all dropped after."""
    admin = create_async_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    created: list[str] = []

    async def make() -> str:
        name = unique("montrg_test_")
        async with admin.connect() as conn:
            await conn.execute(text(f'CREATE DATABASE "{name}"'))
        created.append(name)
        return PG_ADMIN_URL.rsplit("/", 1)[0] + f"/{name}"

    try:
        yield make  # type: ignore[misc]
    finally:
        async with admin.connect() as conn:
            for name in created:
                await conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        await admin.dispose()


@pytest.fixture
async def mariadb_url(monkeypatch) -> AsyncIterator[Callable[..., str]]:
    """Factory: MariaDB with a schema (database) of this test's own; all dropped after.

    `make()` sets MONTRG_SCHEMA to the test's schema; `make(own_schema=True)` returns a URL
    whose montrg_schema parameter names a further one (a second database on the same server).
    """
    schemas: list[str] = []

    def make(own_schema: bool = False) -> str:
        if not schemas:
            schemas.append(unique("montrg_test_"))
            monkeypatch.setenv("MONTRG_SCHEMA", schemas[0])
        if own_schema:
            schemas.append(unique("montrg_test_"))
            return f"{MARIADB_URL}?montrg_schema={schemas[-1]}"
        return MARIADB_URL

    try:
        yield make  # type: ignore[misc]
    finally:
        if schemas:
            engine = create_async_engine(MARIADB_URL)
            async with engine.begin() as conn:
                for schema in schemas:
                    await conn.execute(text(f"DROP DATABASE IF EXISTS `{schema}`"))
            await engine.dispose()


@pytest.fixture
def sqlite_url(tmp_path) -> Callable[[], str]:
    """Factory: a fresh SQLite file per call."""

    def make() -> str:
        return f"sqlite+aiosqlite:///{tmp_path / unique('db_')}.db"

    return make


@pytest.fixture
async def db_pair(pg_url, mariadb_url, sqlite_url) -> AsyncIterator[Callable[[str], object]]:
    """Factory: `await db_pair("postgresql->mariadb")` -> (source, target) test databases with
    blocks saved and the schema created; disposed after the test (the databases are dropped by
    their own fixtures). MariaDB sets MONTRG_SCHEMA first, which every database then uses."""
    made: list[Db] = []

    async def make(spec: str) -> tuple[Db, Db]:
        kinds = spec.split("->")
        if "mariadb" in kinds:
            mariadb_url()
        out = []
        for role, kind in zip(("iot", "hq"), kinds):
            if kind == "mariadb":  # a second MariaDB database on the same server gets its own schema
                url = mariadb_url(own_schema=role == "hq" and kinds[0] == "mariadb")
            else:
                url = await pg_url() if kind == "postgresql" else sqlite_url()
            out.append(await make_db(url, unique(f"t-{role}-")))
            made.append(out[-1])
        return out[0], out[1]

    try:
        yield make  # type: ignore[misc]
    finally:
        for d in made:
            await d.db.dispose()


@pytest.fixture(scope="session")
def full_prefect_server():
    """A full `prefect server start` of its own (every service: triggers, actions, late runs), on a
    free loopback port; yields the environment that points a process at it. The test harness's
    server runs no automations, so the tests of automations use this one."""
    from tests.helpers import PrefectServer

    server = PrefectServer()
    try:
        server.start()
        yield server.env
    finally:
        server.stop()
