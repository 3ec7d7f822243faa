"""A flow that only waits: started in its own process by tests/test_crash_detection.py and killed."""

import asyncio

from prefect import flow


@flow(name="montrg-test-sleeper")
async def sleeper(seconds: float = 600) -> None:
    await asyncio.sleep(seconds)


if __name__ == "__main__":
    asyncio.run(sleeper())
