"""Chunks are read concurrently and written in order (WriteTurns), pure asyncio."""

from __future__ import annotations

import asyncio

import pytest

from flows.hourly_tasks import WriteTurns


async def test_writes_go_in_chunk_order_whatever_order_the_reads_finish_in():
    turns, written = WriteTurns(), []

    async def chunk(number: int, read_seconds: float) -> None:
        await asyncio.sleep(read_seconds)  # the read: the last chunk finishes first
        async with turns.turn(number):
            await asyncio.sleep(0)
            written.append(number)

    await asyncio.gather(chunk(0, 0.03), chunk(1, 0.02), chunk(2, 0.0))
    assert written == [0, 1, 2]


async def test_a_failed_write_keeps_the_turn_so_later_chunks_write_nothing():
    turns, written = WriteTurns(), []

    async def chunk(number: int) -> None:
        async with turns.turn(number):
            if number == 1:
                raise ConnectionError("lost the target")
            written.append(number)

    first, second, third = (asyncio.ensure_future(chunk(n)) for n in range(3))
    await first
    with pytest.raises(ConnectionError):
        await second
    await asyncio.sleep(0.01)
    assert not third.done() and written == [0]  # chunk 2 still waits: the run stops at chunk 1
    third.cancel()

    retried = asyncio.ensure_future(chunk(2))
    async with turns.turn(1):  # a retry of chunk 1 takes its turn again, then chunk 2 may go
        written.append(1)
    await retried
    assert written == [0, 1, 2]
