"""Job watermarks: how far a job has processed, moved only forward and only with its load."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import (
    select,
)
from sqlalchemy.ext.asyncio import AsyncConnection

from flows.store.connection import Database
from flows.store.schema import etl_watermark


async def get_watermark(db: Database, job: str) -> datetime | None:
    """The end of the last contiguous window `job` completed, or None if it never ran."""
    t = etl_watermark
    async with db.engine.connect() as conn:
        return (await conn.execute(select(t.c.watermark).where(t.c.job_name == job))).scalar()


async def extend_watermark(
    db: Database, job: str, start: datetime, end: datetime, now: datetime, create: bool = False
) -> datetime | None:
    """Record that [start, end) was processed; returns the stored watermark.

    The watermark is the end of the contiguous processed hours: it moves to `end` only when the
    window touches it (start <= watermark), never backward, and never across a gap. With
    `create`, a job without a watermark gets `end`.
    """
    async with db.engine.begin() as conn:
        return await extend_watermark_in(conn, job, start, end, now, create)


async def extend_watermark_in(
    conn: AsyncConnection, job: str, start: datetime, end: datetime, now: datetime, create: bool
) -> datetime | None:
    t = etl_watermark
    query = select(t.c.watermark).where(t.c.job_name == job).with_for_update()
    current = (await conn.execute(query)).scalar()
    if current is None:
        if create:
            await conn.execute(t.insert().values(job_name=job, watermark=end, updated_dt=now))
            return end
        return None
    if start <= current < end:
        await conn.execute(t.update().where(t.c.job_name == job).values(watermark=end, updated_dt=now))
        return end
    return current
