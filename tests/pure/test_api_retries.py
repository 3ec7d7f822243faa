"""A fan-out parent keeps asking a Prefect API that restarts (no connection, 502/503/504) and gives
up on anything else at once (flows.pipelines.fanout.with_api_retries)."""

from __future__ import annotations

import asyncio

import httpx
import pytest

from flows.pipelines.fanout import api_hiccup, with_api_retries


def status_error(code: int) -> httpx.HTTPStatusError:
    request = httpx.Request("POST", "http://127.0.0.1:4200/api/deployments/x/create_flow_run")
    return httpx.HTTPStatusError(f"{code}", request=request, response=httpx.Response(code, request=request))


def test_what_counts_as_a_hiccup():
    assert api_hiccup(httpx.ConnectError("refused")) and api_hiccup(httpx.ReadTimeout("slow"))
    assert api_hiccup(status_error(503)) and api_hiccup(status_error(502))
    assert not api_hiccup(status_error(404)) and not api_hiccup(status_error(422)) and not api_hiccup(ValueError("bug"))


def test_a_restarting_api_is_asked_again_and_anything_else_fails_at_once(monkeypatch):
    pauses: list[float] = []

    async def no_wait(seconds: float) -> None:
        pauses.append(seconds)

    monkeypatch.setattr(asyncio, "sleep", no_wait)  # the pauses are recorded, not slept
    answers = [httpx.ConnectError("refused"), status_error(503), "the run"]

    async def call():
        answer = answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer

    assert asyncio.run(with_api_retries(call, "creating a chunk")) == "the run"
    assert pauses == [1.0, 2.0]

    async def not_found():
        raise status_error(404)

    with pytest.raises(httpx.HTTPStatusError):
        asyncio.run(with_api_retries(not_found, "creating a chunk"))

    async def always_down():
        raise httpx.ConnectError("refused")

    pauses.clear()
    with pytest.raises(httpx.ConnectError):  # patience runs out: the error itself
        asyncio.run(with_api_retries(always_down, "creating a chunk", patience=0))
    assert pauses == []
