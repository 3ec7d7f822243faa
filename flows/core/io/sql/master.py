"""Master data and alerts in the HQ database."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

import polars as pl
from sqlalchemy import (
    select,
    update,
)

from flows.core.alerts import ALERT_KEYS
from flows.core.io.sql.connection import Database, locked_transaction
from flows.core.io.sql.writes import polars_schema, read_rows, upsert_rows
from flows.core.schema import (
    alerts,
    thresholds,
)
from flows.core.settings import BATCH_ROWS


async def apply_master_changes(db: Database, changes: Sequence, now: datetime) -> None:
    """Apply master-data `changes` (flows.core.master.Changes) in one transaction, in order."""
    async with db.engine.begin() as conn:
        for change in changes:
            table, key = change.table.table, change.table.key
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


@dataclass
class AlertChanges:
    opened: pl.DataFrame  # new breaches and re-opened ones: one event each
    resolved: int


async def record_alerts(db: Database, breaches: pl.DataFrame, hours: pl.DataFrame, now: datetime) -> AlertChanges:
    """Make the alerts of the evaluated (loc_id, alert_time) `hours` equal `breaches`, in one transaction.

    A breach already recorded is kept once (its values refreshed); a resolved one that breaches
    again is re-opened; an open alert of an evaluated hour that no longer breaches is resolved.
    """
    t = alerts
    keys = list(ALERT_KEYS)
    if hours.is_empty():
        return AlertChanges(breaches.clear(), 0)
    lo, hi = hours["alert_time"].min(), hours["alert_time"].max()
    async with locked_transaction(db, "alerts") as conn:
        rows = (
            await conn.execute(
                select(t.c.alert_id, *(t.c[k] for k in keys), t.c.status)
                .where(t.c.alert_time >= lo, t.c.alert_time <= hi)
                .with_for_update()
            )
        ).all()
        existing = pl.DataFrame(
            rows, schema={"alert_id": pl.Int64, **polars_schema(t, keys), "status": pl.String}, orient="row"
        ).join(hours.select("loc_id", "alert_time"), on=["loc_id", "alert_time"], how="semi")
        new = breaches.join(existing.select(keys), on=keys, how="anti")
        known = breaches.join(existing.select(keys), on=keys, how="semi")
        reopened = known.join(existing.filter(status="resolved").select(keys), on=keys, how="semi")
        gone = existing.filter(status="open").join(breaches.select(keys), on=keys, how="anti")
        await upsert_rows(conn, t, keys, new.with_columns(status=pl.lit("open"), created_dt=pl.lit(now)))
        await upsert_rows(conn, t, keys, known.with_columns(status=pl.lit("open"), resolved_dt=pl.lit(None, pl.Datetime("us"))))
        if gone.height:
            await conn.execute(
                update(t).where(t.c.alert_id.in_(gone["alert_id"].to_list())).values(status="resolved", resolved_dt=now)
            )
    return AlertChanges(pl.concat([new, reopened]), gone.height)
