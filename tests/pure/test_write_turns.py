"""Chunks are read concurrently and written in order (flows.pipelines.streams.WriteTurns), pure asyncio.
Events, not sleeps, decide which read finishes first."""

from __future__ import annotations

import asyncio

import pytest

from flows.pipelines.streams import WriteTurns


async def test_writes_go_in_chunk_order_whatever_order_the_reads_finish_in():
    turns, written = WriteTurns(), []
    read = [asyncio.Event() for _ in range(3)]
    done_reading = [asyncio.Event() for _ in range(3)]

    async def chunk(number: int) -> None:
        await read[number].wait()  # the read
        done_reading[number].set()
        async with turns.turn(number):  # without turns, the write would follow at once
            written.append(number)

    chunks = asyncio.gather(*(chunk(n) for n in range(3)))
    for number in (2, 1):  # the last chunk's read finishes first
        read[number].set()
        await done_reading[number].wait()
        assert written == []  # it waits for chunk 0
    read[0].set()
    await chunks
    assert written == [0, 1, 2]


async def test_a_failed_write_keeps_the_turn_so_later_chunks_write_nothing():
    turns, written = WriteTurns(), []
    at_turn = asyncio.Event()

    async def chunk(number: int) -> None:
        if number == 2:
            at_turn.set()
        async with turns.turn(number):
            if number == 1:
                raise ConnectionError("lost the target")
            written.append(number)

    await chunk(0)
    with pytest.raises(ConnectionError):
        await chunk(1)
    third = asyncio.ensure_future(chunk(2))
    await at_turn.wait()
    assert not third.done() and written == [0]  # chunk 2 waits: the run stops at chunk 1

    async with turns.turn(1):  # a retry of chunk 1 takes its turn again, then chunk 2 may go
        written.append(1)
    await third
    assert written == [0, 1, 2]


async def test_at_most_readers_chunks_read_at_once_and_a_writer_frees_its_slot():
    turns = WriteTurns(readers=2)
    reading, most = set(), 0
    release = {n: asyncio.Event() for n in range(4)}
    entered = {n: asyncio.Event() for n in range(4)}

    async def chunk(number: int) -> None:
        nonlocal most
        async with turns.reading():
            reading.add(number)
            most = max(most, len(reading))
            entered[number].set()
            await release[number].wait()
            reading.discard(number)
        async with turns.turn(number):
            pass

    chunks = asyncio.gather(*(chunk(n) for n in range(4)))
    await entered[0].wait()
    await entered[1].wait()
    assert reading == {0, 1} and not entered[2].is_set()  # the third waits for a slot
    release[0].set()  # chunk 0 reads no more (it writes): chunk 2 may read
    await entered[2].wait()
    assert not entered[3].is_set()
    for n in (1, 2, 3):
        release[n].set()
    await chunks
    assert most == 2
