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
