"""Master data in the HQ database: the master tables, their sync, and what the hourly job reads of them."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

import polars as pl
from sqlalchemy import (
    Table,
    update,
)

from flows.domain.master import MasterTable
from flows.settings import BATCH_ROWS
from flows.store.connection import Database
from flows.store.schema import (
    locations,
    sensors,
    thresholds,
)
from flows.store.writes import read_rows, upsert_rows

# in load order: locations before the sensors that point at them
_MASTER = ((locations, "loc_id"), (sensors, "sensor_id"), (thresholds, "threshold_id"))
MASTER_TABLES = tuple(MasterTable(t.name, key, tuple(c.name for c in t.columns if c.name != "upd_dt")) for t, key in _MASTER)
_BY_NAME = {t.name: t for t, _ in _MASTER}


async def read_master(db: Database, spec: MasterTable) -> pl.DataFrame:
    """Every row of one master table, its compared columns."""
    return await read_rows(db, _BY_NAME[spec.name], list(spec.columns))


def master_tables() -> list[Table]:
    """The master tables (for table checks), in load order."""
    return [t for t, _ in _MASTER]


async def apply_master_changes(db: Database, changes: Sequence, now: datetime) -> None:
    """Apply master-data `changes` (flows.domain.master.Changes) in one transaction, in order."""
    async with db.engine.begin() as conn:
        for change in changes:
            table, key = _BY_NAME[change.table.name], change.table.key
            rows = pl.concat([change.inserts, change.updates])
            await upsert_rows(conn, table, [key], rows.with_columns(upd_dt=pl.lit(now, dtype=pl.Datetime("us"))))
            for start in range(0, len(change.deactivate), BATCH_ROWS):
                keys = change.deactivate[start : start + BATCH_ROWS]
                await conn.execute(
                    update(table).where(table.c[key].in_(keys)).values(is_active=False, upd_dt=now)
                )


async def read_thresholds(db: Database) -> pl.DataFrame:
    """The target's thresholds, inactive ones included (alerts.effective_thresholds keeps the active)."""
    cols = ["threshold_type", "level", "min_value", "max_value", "loc_id", "is_active"]
    return await read_rows(db, thresholds, cols)


async def read_locations(db: Database) -> pl.DataFrame:
    """The target's locations as coverage needs them: loc_id, is_active, poll_interval_s."""
    return await read_rows(db, locations, ["loc_id", "is_active", "poll_interval_s"])
