"""PostgreSQL reads through ADBC straight into Polars: whole results, or streamed in batches."""

from __future__ import annotations

import asyncio
import importlib
import threading
from collections.abc import AsyncIterator

import polars as pl

from flows.errors import database_error
from flows.store.connection import Database

DRIVER = "adbc_driver_postgresql.dbapi"


def import_driver_early(db: Database) -> None:
    """When `db` is read through ADBC (PostgreSQL), import its driver, with pyarrow and NumPy, in a
    background thread now, while the caller waits on the Prefect server and its other databases:
    about 0.3 s of imports that otherwise stand between a raw load's first query and its first
    rows. The first use imports it as usual and waits for this import if it is still under way;
    an import that fails here fails again there, where it is reported."""
    if db.dialect != "postgresql":  # no pyarrow (its memory, its import) where ADBC is not used
        return

    def load() -> None:
        try:
            importlib.import_module(DRIVER)
        except Exception:  # noqa: BLE001 - the import at first use raises it, with its context
            pass

    threading.Thread(target=load, name="montrg-import-adbc", daemon=True).start()


async def read_adbc(db: Database, query: str, what: str) -> pl.DataFrame:
    """Run `query` on PostgreSQL through ADBC straight into Polars (Arrow, no Python objects)."""
    uri = db.url.set(drivername="postgresql").render_as_string(hide_password=False)
    try:
        return await asyncio.to_thread(pl.read_database_uri, query, uri, engine="adbc")
    except Exception as exc:  # ADBC errors may quote the URI: never let the password out
        raise database_error(db.describe(), what, exc, db.redact) from None


async def stream_adbc(
    db: Database, query: str, what: str, batch_rows: int, first_rows: int | None = None
) -> AsyncIterator[pl.DataFrame]:
    """Run `query` on PostgreSQL through ADBC and yield its rows as frames of `batch_rows` (the
    first one `first_rows`, the last one shorter), fetching Arrow record batches in a worker
    thread: memory holds about one batch, not the whole result. A small first frame lets the
    caller's pipeline start while the rest is read."""
    import adbc_driver_postgresql.dbapi as adbc
    import pyarrow as pa

    uri = db.url.set(drivername="postgresql").render_as_string(hide_password=False)

    def failed(exc: Exception) -> Exception:  # ADBC errors may quote the URI: never let the password out
        return database_error(db.describe(), what, exc, db.redact)

    def start():
        conn = adbc.connect(uri)
        try:
            cursor = conn.cursor()
            cursor.adbc_statement.set_options(**{"adbc.postgresql.batch_size_hint_bytes": str(4 << 20)})
            cursor.execute(query)
            return conn, cursor, cursor.fetch_record_batch()
        except BaseException:
            conn.close()
            raise

    def next_batch(reader):
        try:
            return reader.read_next_batch()
        except StopIteration:
            return None

    def close(conn, cursor, reader) -> None:
        for closing in (reader, cursor, conn):
            try:
                closing.close()
            except Exception:  # noqa: BLE001 - closing after a failure: the first error is the one to report
                pass

    try:
        conn, cursor, reader = await asyncio.to_thread(start)
    except Exception as exc:
        raise failed(exc) from None
    try:
        pending: list = []
        held = 0
        cut = min(first_rows or batch_rows, batch_rows)
        while True:
            try:
                batch = await asyncio.to_thread(next_batch, reader)
            except Exception as exc:
                raise failed(exc) from None
            if batch is not None:
                pending.append(batch)
                held += batch.num_rows
            while held >= cut or (batch is None and held):
                table = pa.Table.from_batches(pending, reader.schema)
                yield pl.from_arrow(table.slice(0, cut))  # type: ignore[misc]
                rest = table.slice(cut)
                pending, held, cut = rest.to_batches(), rest.num_rows, batch_rows
            if batch is None:
                return
    finally:
        await asyncio.to_thread(close, conn, cursor, reader)
