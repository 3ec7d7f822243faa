"""The task policy every flow shares: which failures are retried and how, and the table checks.

Retry only what a retry can cure (flows.errors.is_transient: a lost or refused connection, a
deadlock or a lock timeout), five times with exponential backoff from MONTRG_RETRY_BACKOFF_S (5, 10,
20, 40, 80 s by default: a task waits out about 2.5 minutes of a database that restarts, as for a
patch, and its run completes); bad data and SQL errors fail at once.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager

from prefect.cache_policies import NO_CACHE
from prefect.tasks import exponential_backoff
from sqlalchemy import Table

from flows import store
from flows.errors import DatabaseUnavailable, MissingTableError, QueryFailed, is_transient
from flows.settings import retry_backoff_seconds
from flows.store import Database


def retry_on_connection_error(task, task_run, state) -> bool:  # noqa: ARG001 - Prefect's signature
    return is_transient(state.data if isinstance(state.data, BaseException) else None)


RETRIES = 5
RETRYING = dict(
    retries=RETRIES,
    retry_delay_seconds=exponential_backoff(backoff_factor=retry_backoff_seconds()),
    retry_jitter_factor=0.2,
    retry_condition_fn=retry_on_connection_error,
    cache_policy=NO_CACHE,
)



@asynccontextmanager
async def answering(db: Database, what: str | None = None) -> AsyncIterator[None]:
    """Errors a retry can cure become DatabaseUnavailable ("... does not answer"), naming the block
    with its password masked; with `what`, any other error becomes QueryFailed alike."""
    try:
        yield
    except Exception as exc:
        if is_transient(exc):
            raise DatabaseUnavailable(f"{db.describe()} does not answer: {db.redact(str(exc))}") from None
        if what is None:
            raise
        said = " ".join(str(getattr(exc, "orig", None) or exc).split())  # the driver's words, not SQLAlchemy's wrapper
        raise QueryFailed(f"{db.describe()}: {what} failed: {db.redact(said)}") from None


async def require_tables(db: Database, tables: Iterable[Table], writes: str | None = None) -> str:
    """`db` answers and holds `tables`; returns its version. Raises ConnectionError (retried) when it
    does not answer, MissingTableError naming the block, the tables and the command that creates them.
    `writes` names the role of a database the flow writes to (a SQL Server or Oracle block is refused)."""
    if writes is not None:
        db.require_writable(writes)
    async with answering(db):
        version = await store.ping(db)
        missing = await store.missing_tables(db, tables)
    if missing:
        where = f"{db.schema}." if db.schema else ""
        raise MissingTableError(
            f"{db.describe()}: missing table(s) {', '.join(where + m for m in missing)}; "
            f"create them with: montrg db init --block {db.block}"
        )
    return version.split(" on ")[0]
