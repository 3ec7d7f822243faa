"""Alarm episodes and mutes in the HQ database: what an evaluation needs to plan them, the plan
carried out, and what people do to them (acknowledge, mute), all without decisions of its own."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import polars as pl
from sqlalchemy import bindparam, func, insert, or_, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from flows.domain.episodes import LIVE, Episode, EpisodePlan
from flows.store.connection import Database
from flows.store.schema import alarm_episodes, alarm_mutes, alerts
from flows.store.writes import polars_schema, upsert_rows

EPISODE_FIELDS = [
    "episode_id", "loc_id", "measure", "first_hour", "last_hour", "peak_level", "peak_value", "peak_hour", "message",
    "notified_level", "state", "closed_hour", "close_reason",
]
SHOWN = [*EPISODE_FIELDS, "opened_dt", "closed_dt", "acked_by", "acked_dt", "ack_note"]
MUTE_FIELDS = ["mute_id", "loc_id", "starts_dt", "until_dt", "reason", "muted_by", "created_dt"]


@dataclass
class EpisodeFacts:
    """What plan_episodes needs from the database for the hours first..last: the `known` episodes
    (live, or meeting those hours; locked), per live episode begun before `first` its last bad
    hour before it, and the mutes that meet those hours or run later (one running now closes its
    location's live episodes)."""

    known: list[Episode]
    last_bad_before: dict[tuple[str, str], datetime]
    mutes: pl.DataFrame


async def read_facts(conn: AsyncConnection, first: datetime, last: datetime) -> EpisodeFacts:
    t = alarm_episodes
    rows = (await conn.execute(
        select(*(t.c[c] for c in EPISODE_FIELDS))
        .where(or_(t.c.state.in_(LIVE), (t.c.first_hour <= last) & (t.c.last_hour >= first)))
        .with_for_update()
    )).all()
    known = [Episode(**row._mapping) for row in rows]
    crossing = [e for e in known if e.live and e.first_hour < first <= e.last_hour]
    last_bad: dict[tuple[str, str], datetime] = {}
    if crossing:
        a = alerts
        found = await conn.execute(
            select(a.c.loc_id, a.c.measure, func.max(a.c.alert_time))
            .where(a.c.status == "open", a.c.alert_time < first, a.c.alert_time >= min(e.first_hour for e in crossing),
                   a.c.loc_id.in_(sorted({e.loc_id for e in crossing})))
            .group_by(a.c.loc_id, a.c.measure)
        )
        last_bad = {(loc, measure): hour for loc, measure, hour in found}
    m = alarm_mutes
    mutes = (await conn.execute(
        select(m.c.loc_id, m.c.starts_dt, m.c.until_dt, m.c.reason).where(m.c.until_dt > first)
    )).all()
    cols = ["loc_id", "starts_dt", "until_dt", "reason"]
    return EpisodeFacts(known, last_bad, pl.DataFrame(mutes, schema=polars_schema(m, cols), orient="row"))


async def carry_out(conn: AsyncConnection, plan: EpisodePlan, now: datetime) -> None:
    """Insert the new episodes (their ids are set on them), update the changed ones, and stamp
    the per-hour alert of each announcement (notified_dt, replaced_level)."""
    t = alarm_episodes
    writable = [c for c in EPISODE_FIELDS if c != "episode_id"]
    if plan.new:
        await conn.execute(insert(t), [
            {**{c: getattr(e, c) for c in writable}, "opened_dt": now, "closed_dt": now if e.closed else None} for e in plan.new
        ])
        ids = await conn.execute(
            select(t.c.episode_id, t.c.loc_id, t.c.measure, t.c.first_hour)
            .where(t.c.first_hour >= min(e.first_hour for e in plan.new), t.c.first_hour <= max(e.first_hour for e in plan.new))
        )
        by_key = {(loc, measure, first): episode_id for episode_id, loc, measure, first in ids}
        for e in plan.new:
            e.episode_id = by_key[(e.loc_id, e.measure, e.first_hour)]
    if plan.changed:
        values = {c: bindparam(f"v_{c}") for c in writable if c not in ("loc_id", "measure")}
        await conn.execute(
            update(t).where(t.c.episode_id == bindparam("v_id")).values(**values, closed_dt=bindparam("v_closed_dt")),
            [{"v_id": e.episode_id, **{f"v_{c}": getattr(e, c) for c in values}, "v_closed_dt": now if e.closed else None}
             for e in plan.changed],
        )
    if plan.announcements:
        stamps = pl.DataFrame([
            {"loc_id": a.episode.loc_id, "alert_time": a.hour, "measure": a.episode.measure, "level": a.level,
             "notified_dt": now, "replaced_level": a.replaces}
            for a in plan.announcements
        ], schema=polars_schema(alerts, ["loc_id", "alert_time", "measure", "level", "notified_dt", "replaced_level"]))
        await upsert_rows(conn, alerts, ["loc_id", "alert_time", "measure", "level"], stamps)


async def read_episodes(db: Database, *, live_only: bool = False, loc_id: str | None = None, limit: int | None = None) -> pl.DataFrame:
    """Episodes, live ones first, then the most recent first."""
    t = alarm_episodes
    query = select(*(t.c[c] for c in SHOWN))
    if live_only:
        query = query.where(t.c.state.in_(LIVE))
    if loc_id is not None:
        query = query.where(t.c.loc_id == loc_id)
    query = query.order_by((t.c.state == "closed"), t.c.last_hour.desc(), t.c.episode_id.desc()).limit(limit)
    async with db.engine.connect() as conn:
        rows = (await conn.execute(query)).all()
    return pl.DataFrame(rows, schema=polars_schema(t, SHOWN), orient="row")


async def acknowledge(db: Database, episode_id: int, by: str, note: str | None, now: datetime) -> dict[str, object]:
    """Mark a live episode acknowledged by `by`; returns its row after. An unknown or closed
    episode is an error that says which."""
    t = alarm_episodes
    async with db.engine.begin() as conn:
        done = await conn.execute(
            update(t).where(t.c.episode_id == episode_id, t.c.state.in_(LIVE))
            .values(state="acknowledged", acked_by=by, acked_dt=now, ack_note=note)
        )
        row = (await conn.execute(select(*(t.c[c] for c in SHOWN)).where(t.c.episode_id == episode_id))).first()
    if row is None:
        raise LookupError(f"alarm {episode_id} does not exist in {db.describe()}: see montrg alarms list")
    if done.rowcount == 0:
        raise ValueError(f"alarm {episode_id} is closed ({row.close_reason}, {row.closed_dt:%Y-%m-%d %H:%M}): nothing to acknowledge")
    return dict(row._mapping)


async def mute(db: Database, loc_id: str, starts: datetime, until: datetime, reason: str, by: str | None, now: datetime) -> tuple[int, list[int]]:
    """Record a mute of `loc_id` in [starts, until) and close its live episodes (reason: muted).
    Returns the mute's id and the ids of the episodes it closed."""
    m, t = alarm_mutes, alarm_episodes
    async with db.engine.begin() as conn:
        await conn.execute(insert(m).values(loc_id=loc_id, starts_dt=starts, until_dt=until, reason=reason, muted_by=by, created_dt=now))
        mute_id = (await conn.execute(select(func.max(m.c.mute_id)).where(m.c.loc_id == loc_id, m.c.created_dt == now))).scalar_one()
        closed = [r[0] for r in await conn.execute(select(t.c.episode_id).where(t.c.loc_id == loc_id, t.c.state.in_(LIVE)).with_for_update())]
        if closed and starts <= now:
            await conn.execute(update(t).where(t.c.episode_id.in_(closed)).values(
                state="closed", closed_dt=now, close_reason=f"muted until {until:%Y-%m-%d %H:%M}: {reason}"[:200]))
        else:
            closed = []
    return mute_id, closed


async def unmute(db: Database, loc_id: str, now: datetime) -> int:
    """End the mutes of `loc_id` that are running or planned, now; returns how many."""
    m = alarm_mutes
    async with db.engine.begin() as conn:
        done = await conn.execute(update(m).where(m.c.loc_id == loc_id, m.c.until_dt > now).values(until_dt=now))
    return done.rowcount


async def read_mutes(db: Database, at: datetime) -> pl.DataFrame:
    """The mutes running at `at` or planned after it."""
    m = alarm_mutes
    async with db.engine.connect() as conn:
        rows = (await conn.execute(select(*(m.c[c] for c in MUTE_FIELDS)).where(m.c.until_dt > at).order_by(m.c.loc_id, m.c.starts_dt))).all()
    return pl.DataFrame(rows, schema=polars_schema(m, MUTE_FIELDS), orient="row")
