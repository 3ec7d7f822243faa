"""Alerts in the HQ database: the recorded alerts of some hours, and the execution of an AlertPlan
(with the alarm episodes that follow it, flows.store.episodes)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

import polars as pl
from sqlalchemy import select, update

from flows.domain.alerts import ALERT_KEYS
from flows.domain.episodes import EpisodePlan
from flows.domain.health import AlertPlan
from flows.settings import BATCH_ROWS
from flows.store.connection import Database, locked_transaction
from flows.store.episodes import EpisodeFacts, carry_out, read_facts
from flows.store.schema import alerts
from flows.store.writes import polars_schema, upsert_rows


async def record_alerts(
    db: Database,
    first: datetime,
    last: datetime,
    plan: Callable[[pl.DataFrame], AlertPlan],
    plan_episodes: Callable[[AlertPlan, EpisodeFacts], EpisodePlan],
    now: datetime,
) -> tuple[AlertPlan, EpisodePlan]:
    """Carry out the alert plan of the hours `first`..`last` (inclusive) and the episodes' plan that
    follows it, in one transaction: read their recorded alerts (alert_id, keys, status, values;
    locked), let `plan` (health.plan_alerts with the breaches found) decide, insert the new, refresh
    and re-open the known, resolve the gone ones at `now`; then read the episodes' facts (locked),
    let `plan_episodes` decide and carry it out (episodes.carry_out). Returns both plans, the new
    episodes with their ids."""
    t = alerts
    keys = list(ALERT_KEYS)
    values = ["measured_value", "threshold_min", "threshold_max", "message"]
    async with locked_transaction(db, "alerts") as conn:
        rows = (
            await conn.execute(
                select(t.c.alert_id, *(t.c[k] for k in keys), t.c.status, *(t.c[v] for v in values))
                .where(t.c.alert_time >= first, t.c.alert_time <= last)
                .with_for_update()
            )
        ).all()
        schema = {"alert_id": pl.Int64, **polars_schema(t, keys), "status": pl.String, **polars_schema(t, values)}
        decided = plan(pl.DataFrame(rows, schema=schema, orient="row"))
        await upsert_rows(conn, t, keys, decided.new.with_columns(status=pl.lit("open"), created_dt=pl.lit(now)))
        await upsert_rows(conn, t, keys, decided.known.with_columns(status=pl.lit("open"), resolved_dt=pl.lit(None, pl.Datetime("us"))))
        for start in range(0, len(decided.resolve), BATCH_ROWS):
            ids = decided.resolve[start : start + BATCH_ROWS]
            await conn.execute(update(t).where(t.c.alert_id.in_(ids)).values(status="resolved", resolved_dt=now))
        episodes = plan_episodes(decided, await read_facts(conn, first, last))
        await carry_out(conn, episodes, now)
    return decided, episodes


async def read_open_alerts(db: Database, first: datetime, last: datetime) -> pl.DataFrame:
    """The open alerts of the hours `first`..`last` (inclusive): keys, measured value, message."""
    t = alerts
    cols = [*ALERT_KEYS, "measured_value", "message"]
    async with db.engine.connect() as conn:
        rows = (await conn.execute(
            select(*(t.c[c] for c in cols)).where(t.c.alert_time >= first, t.c.alert_time <= last, t.c.status == "open")
        )).all()
    return pl.DataFrame(rows, schema=polars_schema(t, cols), orient="row")
