"""Every error of flet-montrg's own, and which errors a retry can cure. No Prefect in here.

Retry only what a retry can cure: a lost or refused connection, a server shutting down, a
deadlock or a lock timeout. A SQL error or bad data fails at once: the same statement on the same
data fails again. Classified by the drivers' own codes:

| driver | transient |
| --- | --- |
| PostgreSQL (asyncpg, ADBC) | SQLSTATE classes 08 (connection), 40 (rollback: deadlock, serialization), 53 (resources), 57P (shutdown), 55P03 (lock timeout); ADBC's IO status without a SQLSTATE (no connection) |
| MariaDB (asyncmy) | 1040, 1053, 1205, 1213, 1927, 2002, 2003, 2006, 2013, 2055, 4031 (connections, shutdown, lock wait, deadlock) |
| SQLite | "database is locked" |
| SQL Server (pyodbc) | ODBC SQLSTATE classes 08 (connection), 40001 (deadlock victim), HYT00/HYT01 (timeouts) |
| Oracle (oracledb) | DPY-4011, DPY-6005 (connection closed, cannot connect); ORA-00060 (deadlock), ORA-03113, ORA-03114, ORA-12170, ORA-12541 (connection lost, timeout, no listener) |
| any | ConnectionError, TimeoutError, a connection SQLAlchemy invalidated, DatabaseUnavailable |
"""

from __future__ import annotations

import asyncio


class ParameterError(ValueError):
    """A flow parameter's value is not one it takes; the one-line message names the parameter, the
    value and the accepted form."""


class SourceDataError(ValueError):
    """A raw value in a source that cannot be aggregated; the message names location, time and value."""


class MissingTableError(RuntimeError):
    """A required table does not exist; the message names the block, the table and `montrg db init`."""


class TargetValidationError(RuntimeError):
    """The target does not hold what was computed; the message lists the offending rows."""


class MasterDataError(ValueError):
    """Source master data that cannot be loaded; the message names every bad row."""


class ChunksFailed(RuntimeError):
    """Some fanned-out chunks did not complete; the message lists their ranges, for a re-run."""


class DatabaseUnavailable(ConnectionError):
    """A database does not answer or dropped the connection (transient: retried)."""


class QueryFailed(RuntimeError):
    """A statement the database refused (not transient: a retry would fail alike)."""


PG_TRANSIENT_CLASSES = ("08", "40", "53", "57P")
PG_TRANSIENT_STATES = {"55P03"}
MARIADB_TRANSIENT = {1040, 1053, 1205, 1213, 1927, 2002, 2003, 2006, 2013, 2055, 4031}
ADBC_STATUS_IO = 10
ODBC_TRANSIENT_CLASSES = ("08",)
ODBC_TRANSIENT_STATES = {"40001", "HYT00", "HYT01"}
ORACLE_TRANSIENT = {"DPY-4011", "DPY-6005", "ORA-00060", "ORA-03113", "ORA-03114", "ORA-12170", "ORA-12541"}


def _chain(exc: BaseException):
    seen = 0
    while exc is not None and seen < 10:
        yield exc
        orig = getattr(exc, "orig", None)
        exc = orig if orig is not None and orig is not exc else exc.__cause__
        seen += 1


def sqlstate(exc: BaseException) -> str | None:
    """The PostgreSQL SQLSTATE of `exc` or what it wraps, if any."""
    for e in _chain(exc):
        state = getattr(e, "sqlstate", None)
        if isinstance(state, str) and state:
            return state
    return None


def mysql_errno(exc: BaseException) -> int | None:
    """The MariaDB/MySQL error number of `exc` or what it wraps, if any."""
    for e in _chain(exc):
        if type(e).__module__.startswith(("asyncmy", "pymysql", "aiomysql")) and e.args and isinstance(e.args[0], int):
            return e.args[0]
    return None


def driver_code(exc: BaseException) -> str | None:
    """The ODBC SQLSTATE (pyodbc) or the Oracle error code (oracledb: DPY-..., ORA-...) of `exc` or
    what it wraps, if any."""
    for e in _chain(exc):
        module = type(e).__module__
        if module.startswith("pyodbc") and e.args and isinstance(e.args[0], str):
            return e.args[0]
        if module.startswith("oracledb") and e.args and getattr(e.args[0], "full_code", None):
            return str(e.args[0].full_code)
    return None


def is_transient(exc: BaseException | None) -> bool:
    """True for errors a retry can cure (see the module's table); False for SQL errors and bad data."""
    if exc is None or isinstance(exc, (SourceDataError, MissingTableError, TargetValidationError, QueryFailed)):
        return False
    if isinstance(exc, DatabaseUnavailable) or getattr(exc, "connection_invalidated", False):
        return True
    state = sqlstate(exc)
    if state is not None:
        return state.startswith(PG_TRANSIENT_CLASSES) or state in PG_TRANSIENT_STATES
    errno = mysql_errno(exc)
    if errno is not None:
        return errno in MARIADB_TRANSIENT
    code = driver_code(exc)
    if code is not None:
        return code.startswith(ODBC_TRANSIENT_CLASSES) or code in ODBC_TRANSIENT_STATES or code in ORACLE_TRANSIENT
    for e in _chain(exc):
        if getattr(e, "status_code", None) == ADBC_STATUS_IO and type(e).__module__.startswith("adbc"):
            return True
        if "database is locked" in str(e) and type(e).__module__.startswith(("sqlite3", "aiosqlite")):
            return True
        if isinstance(e, (ConnectionError, TimeoutError, asyncio.TimeoutError)):
            return True
        if type(e).__name__ in ("ConnectionDoesNotExistError", "InterfaceError") and type(e).__module__.startswith("asyncpg"):
            return True
    return False


def database_error(where: str, what: str, exc: BaseException, redact) -> Exception:
    """`exc` from a driver that may quote its connection URI, as DatabaseUnavailable (transient)
    or QueryFailed, its message with the password masked by `redact`."""
    message = f"{where}: {what} failed: {redact(str(exc))}"
    return DatabaseUnavailable(message) if is_transient(exc) else QueryFailed(message)
