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

from flows.core import health
from flows.core.alerts import ALERT_KEYS
from flows.core.io.sql.connection import Database, locked_transaction
from flows.core.io.sql.writes import polars_schema, read_rows, upsert_rows
from flows.core.schema import (
    alerts,
    locations,
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


async def read_locations(db: Database) -> pl.DataFrame:
    """The target's locations as coverage needs them: loc_id, is_active, poll_interval_s."""
    return await read_rows(db, locations, ["loc_id", "is_active", "poll_interval_s"])


@dataclass
class AlertChanges:
    opened: pl.DataFrame  # new breaches and re-opened ones (every level)
    resolved: int
    notified: pl.DataFrame  # per location, hour and measure, the level to announce (health.to_notify)


async def record_alerts(
    db: Database,
    breaches: pl.DataFrame,
    first: datetime,
    last: datetime,
    spare: pl.DataFrame,
    now: datetime,
    notify_since: datetime,
) -> AlertChanges:
    """Make the alerts of the hours `first`..`last` (inclusive) equal `breaches`, in one transaction,
    except those of the location-hours in `spare` (loc_id, alert_time), which are left as they are.

    A breach already recorded is kept once (its values refreshed); a resolved one that breaches
    again is re-opened; an open alert that no longer breaches is resolved. The levels to announce
    (health.to_notify) get notified_dt and, when they escalate, replaced_level.
    """
    t = alerts
    keys = list(ALERT_KEYS)
    breaches = breaches.join(spare, on=["loc_id", "alert_time"], how="anti")
    async with locked_transaction(db, "alerts") as conn:
        rows = (
            await conn.execute(
                select(t.c.alert_id, *(t.c[k] for k in keys), t.c.status)
                .where(t.c.alert_time >= first, t.c.alert_time <= last)
                .with_for_update()
            )
        ).all()
        existing = pl.DataFrame(
            rows, schema={"alert_id": pl.Int64, **polars_schema(t, keys), "status": pl.String}, orient="row"
        ).join(spare, on=["loc_id", "alert_time"], how="anti")
        new = breaches.join(existing.select(keys), on=keys, how="anti")
        known = breaches.join(existing.select(keys), on=keys, how="semi")
        reopened = known.join(existing.filter(status="resolved").select(keys), on=keys, how="semi")
        gone = existing.filter(status="open").join(breaches.select(keys), on=keys, how="anti")
        notified = health.to_notify(breaches, existing.filter(status="open").select(keys), notify_since)
        await upsert_rows(conn, t, keys, new.with_columns(status=pl.lit("open"), created_dt=pl.lit(now)))
        await upsert_rows(conn, t, keys, known.with_columns(status=pl.lit("open"), resolved_dt=pl.lit(None, pl.Datetime("us"))))
        await upsert_rows(conn, t, keys, notified.select(
            *keys, pl.lit(now, pl.Datetime("us")).alias("notified_dt"), pl.col("replaces").alias("replaced_level")
        ))
        for start in range(0, gone.height, BATCH_ROWS):
            ids = gone["alert_id"].slice(start, BATCH_ROWS).to_list()
            await conn.execute(update(t).where(t.c.alert_id.in_(ids)).values(status="resolved", resolved_dt=now))
    return AlertChanges(pl.concat([new, reopened]), gone.height, notified)


async def read_open_alerts(db: Database, first: datetime, last: datetime) -> pl.DataFrame:
    """The open alerts of the hours `first`..`last` (inclusive): keys, measured value, message."""
    t = alerts
    cols = [*ALERT_KEYS, "measured_value", "message"]
    async with db.engine.connect() as conn:
        rows = (await conn.execute(
            select(*(t.c[c] for c in cols)).where(t.c.alert_time >= first, t.c.alert_time <= last, t.c.status == "open")
        )).all()
    return pl.DataFrame(rows, schema=polars_schema(t, cols), orient="row")
