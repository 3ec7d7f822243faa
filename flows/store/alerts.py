"""Alerts in the HQ database: the recorded alerts of some hours, and the execution of an AlertPlan."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

import polars as pl
from sqlalchemy import select, update

from flows.domain.alerts import ALERT_KEYS
from flows.domain.health import AlertPlan
from flows.settings import BATCH_ROWS
from flows.store.connection import Database, locked_transaction
from flows.store.schema import alerts
from flows.store.writes import polars_schema, upsert_rows


async def record_alerts(
    db: Database, first: datetime, last: datetime, plan: Callable[[pl.DataFrame], AlertPlan], now: datetime
) -> AlertPlan:
    """Carry out the alert plan of the hours `first`..`last` (inclusive) in one transaction: read
    their recorded alerts (alert_id, keys, status; locked), let `plan` (health.plan_alerts with the
    breaches found) decide, then insert the new, refresh and re-open the known, stamp the announced
    (notified_dt, replaced_level) and resolve the gone ones at `now`. Returns the plan carried out."""
    t = alerts
    keys = list(ALERT_KEYS)
    async with locked_transaction(db, "alerts") as conn:
        rows = (
            await conn.execute(
                select(t.c.alert_id, *(t.c[k] for k in keys), t.c.status)
                .where(t.c.alert_time >= first, t.c.alert_time <= last)
                .with_for_update()
            )
        ).all()
        decided = plan(pl.DataFrame(rows, schema={"alert_id": pl.Int64, **polars_schema(t, keys), "status": pl.String}, orient="row"))
        await upsert_rows(conn, t, keys, decided.new.with_columns(status=pl.lit("open"), created_dt=pl.lit(now)))
        await upsert_rows(conn, t, keys, decided.known.with_columns(status=pl.lit("open"), resolved_dt=pl.lit(None, pl.Datetime("us"))))
        await upsert_rows(conn, t, keys, decided.notified.select(
            *keys, pl.lit(now, pl.Datetime("us")).alias("notified_dt"), pl.col("replaces").alias("replaced_level")
        ))
        for start in range(0, len(decided.resolve), BATCH_ROWS):
            ids = decided.resolve[start : start + BATCH_ROWS]
            await conn.execute(update(t).where(t.c.alert_id.in_(ids)).values(status="resolved", resolved_dt=now))
    return decided


async def read_open_alerts(db: Database, first: datetime, last: datetime) -> pl.DataFrame:
    """The open alerts of the hours `first`..`last` (inclusive): keys, measured value, message."""
    t = alerts
    cols = [*ALERT_KEYS, "measured_value", "message"]
    async with db.engine.connect() as conn:
        rows = (await conn.execute(
            select(*(t.c[c] for c in cols)).where(t.c.alert_time >= first, t.c.alert_time <= last, t.c.status == "open")
        )).all()
    return pl.DataFrame(rows, schema=polars_schema(t, cols), orient="row")
