"""Retry only what a retry can cure: the drivers' real errors, classified (flows.errors), and a
flow whose SQL error fails at once with one attempt in its task history."""

from __future__ import annotations

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from flows import store, temperature_backfill
from flows.errors import DatabaseUnavailable, QueryFailed, is_transient
from tests import scenario
from tests.conftest import MARIADB_URL, PG_ADMIN_URL
from tests.helpers import until


async def error_of(url: str, statement: str) -> BaseException:
    engine = create_async_engine(url)
    try:
        async with engine.connect() as conn:
            await conn.execute(text(statement))
    except Exception as exc:  # noqa: BLE001 - the error is what is tested
        return exc
    finally:
        await engine.dispose()
    raise AssertionError(f"{statement} did not fail")


@pytest.mark.parametrize(
    "url,statement,transient",
    [
        (PG_ADMIN_URL, "SELECT 1/0", False),  # SQLSTATE 22012
        (PG_ADMIN_URL, "SELECT * FROM no_such_table", False),  # 42P01
        (PG_ADMIN_URL, "SELECT pg_terminate_backend(pg_backend_pid())", True),  # 57P01: the connection is gone
        (PG_ADMIN_URL.replace(":5432", ":9"), "SELECT 1", True),  # refused
        (MARIADB_URL, "SELECT * FROM no_such_table", False),  # 1146
        (MARIADB_URL, "SELECT 1 FROM", False),  # 1064, which asyncmy may map to OperationalError
        (MARIADB_URL.replace(":3306", ":9"), "SELECT 1", True),  # 2003
        ("sqlite+aiosqlite:///:memory:", "SELECT * FROM no_such_table", False),
    ],
)
async def test_driver_errors_are_classified_by_their_codes(url, statement, transient):
    exc = await error_of(url, statement)
    assert is_transient(exc) is transient, repr(exc)


async def test_adbc_errors_say_whether_a_retry_can_help(db_pair):
    source, _ = await db_pair("postgresql->sqlite")
    with pytest.raises(QueryFailed, match="relation \"no_such_table\" does not exist"):
        await store.read_adbc(source.db, "SELECT * FROM no_such_table", "reading a table")
    down = store.Database.from_url("down", source.db.url.set(port=9))
    with pytest.raises(DatabaseUnavailable, match="Connection refused"):
        await store.read_adbc(down, "SELECT 1", "reading a table")
    await down.dispose()


async def chunk_task_runs(state) -> list:
    """The flow run's aggregate-chunk task runs once the server has recorded their final states.
    Task run states reach the server as events that it records on its own time, so a read right
    after the flow returns can see a chunk still Pending (run_count 0)."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    async def settled():
        async with get_client() as client:
            tasks = await client.read_task_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[state.state_details.flow_run_id])))
        chunk = [t for t in tasks if t.name.startswith("aggregate-chunk")]
        return chunk if chunk and all(t.state and t.state.is_final() for t in chunk) else None

    return await until(settled, 30, "the chunk task runs' final states")


async def backfill_with_trigger(db_pair, spec: str, triggers):
    """The scenario's rows in the source of `spec`, the trigger statements `triggers(table, schema)`
    gives for the target's dialect on its temperature table, then a one-day backfill; its final state."""
    source, target = await db_pair(spec)
    await store.insert_raw(source.db, scenario.rows())
    async with target.db.engine.begin() as conn:
        for statement in triggers(target.table("temperature"), target.db.schema)[target.db.dialect]:
            await conn.execute(text(statement))
    return await temperature_backfill(start="2024-01-31", end="2024-01-31", source_block=source.block,
                                      target_block=target.block, return_state=True)


@pytest.mark.parametrize("spec", ["postgresql->postgresql", "postgresql->mariadb"])
async def test_a_sql_error_fails_at_once_with_one_attempt(db_pair, spec):
    """A target that refuses the write (a trigger raising: PostgreSQL's P0001, MariaDB's SIGNAL 45000,
    which asyncmy reports as an OperationalError): not retried."""
    state = await backfill_with_trigger(db_pair, spec, lambda table, schema: {
        "postgresql": [
            "CREATE FUNCTION refuse() RETURNS trigger AS $$ BEGIN RAISE EXCEPTION 'refused by test'; END $$ LANGUAGE plpgsql",
            f"CREATE TRIGGER refuse BEFORE INSERT ON {table} FOR EACH ROW EXECUTE FUNCTION refuse()",
        ],
        "mysql": [f"CREATE TRIGGER {schema}.refuse BEFORE INSERT ON {table} FOR EACH ROW SIGNAL SQLSTATE '45000' SET MESSAGE_TEXT = 'refused by test'"],
    })

    assert state.is_failed() and "refused by test" in state.message
    chunk = await chunk_task_runs(state)
    assert len(chunk) == 1 and chunk[0].run_count == 1, [(t.name, t.run_count) for t in chunk]


async def test_a_bad_value_fails_at_once_with_one_attempt(db_pair):
    """Text in a numeric column of a loosely typed source (SQLite): bad data, not retried."""
    source, target = await db_pair("sqlite->sqlite")
    await store.insert_raw(source.db, scenario.rows())
    async with source.db.engine.begin() as conn:
        await conn.execute(text("UPDATE temperature_raw SET temperature = 'ERR' WHERE loc_id = 'ONE'"))

    state = await temperature_backfill(start="2024-01-31", end="2024-01-31", source_block=source.block,
                                       target_block=target.block, return_state=True)

    assert state.is_failed() and "temperature='ERR' (str) is not a number" in state.message
    assert [t.run_count for t in await chunk_task_runs(state)] == [1]


@pytest.mark.parametrize("spec", ["postgresql->postgresql", "postgresql->mariadb"])
async def test_a_target_that_stores_other_values_than_written_fails_the_verification(db_pair, spec):
    """A trigger on the target that changes what is stored (adds 1 to temperature_max): the
    verification sees what the database holds (PostgreSQL: the rows the upsert RETURNed; MariaDB:
    read back after the commit), names the location-hours that differ, and the run fails."""
    state = await backfill_with_trigger(db_pair, spec, lambda table, schema: {
        "postgresql": [
            "CREATE FUNCTION bump() RETURNS trigger AS $$ BEGIN NEW.temperature_max := NEW.temperature_max + 1; RETURN NEW; END $$ LANGUAGE plpgsql",
            f"CREATE TRIGGER bump BEFORE INSERT OR UPDATE ON {table} FOR EACH ROW EXECUTE FUNCTION bump()",
        ],
        "mysql": [f"CREATE TRIGGER {schema}.bump BEFORE INSERT ON {table} FOR EACH ROW SET NEW.temperature_max = NEW.temperature_max + 1"],
    })

    assert state.is_failed() and "differ from what was computed" in state.message, state.message
