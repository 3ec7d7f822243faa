"""Async pipelines: run the stage that produces items ahead of the stage that consumes them."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import TypeVar

T = TypeVar("T")
_DONE = object()


async def ahead(items: AsyncIterator[T], depth: int = 1) -> AsyncIterator[T]:
    """Yield what `items` yields, producing up to `depth` items ahead in a background task.

    Its errors surface here, in order, after the items produced before them. Leaving the loop
    early (or failing in it) stops the producer and closes `items`.
    """
    queue: asyncio.Queue = asyncio.Queue(maxsize=depth)

    async def produce() -> None:
        try:
            async for item in items:
                await queue.put(item)
        except Exception as exc:  # noqa: BLE001 - handed to the consumer, raised there
            await queue.put(_Failure(exc))
            return
        finally:
            aclose = getattr(items, "aclose", None)
            if aclose is not None:
                with contextlib.suppress(Exception):
                    await aclose()
        await queue.put(_DONE)

    producer = asyncio.ensure_future(produce())
    try:
        while True:
            item = await queue.get()
            if item is _DONE:
                break
            if isinstance(item, _Failure):
                raise item.error
            yield item
    finally:
        producer.cancel()
        with contextlib.suppress(BaseException):
            await producer


class _Failure:
    def __init__(self, error: Exception) -> None:
        self.error = error


class WriteTurns:
    """Chunks are read concurrently (at most `readers` at once) but written in order: chunk k
    writes once chunks 0..k-1 have.

    A failed write does not pass the turn on (the run stops there), so whatever a failed run leaves
    behind is a prefix of whole chunks; a retried chunk takes its turn again.
    """

    def __init__(self, readers: int | None = None) -> None:
        self._next = 0
        self._changed = asyncio.Condition()
        self._readers = asyncio.Semaphore(readers) if readers else None

    @contextlib.asynccontextmanager
    async def reading(self):
        """A slot to read in: at most `readers` chunks read at once (the other chunks under way
        write, or wait for their turn)."""
        if self._readers is None:
            yield
            return
        async with self._readers:
            yield

    @contextlib.asynccontextmanager
    async def turn(self, number: int):
        async with self._changed:
            await self._changed.wait_for(lambda: self._next >= number)
        yield
        async with self._changed:
            self._next = max(self._next, number + 1)
            self._changed.notify_all()
