"""The shipped automations, applied by `montrg automations apply --notify`, on a full Prefect
server: the hourly SLA notifies for a temperature-etl run that did not complete in time and not for
one that did; a failed run notifies with its link; an alert event notifies. Notifications are
received for real, by a webhook server on loopback behind a Custom Webhook notification block.
Slow (a server start, then an SLA window of 30 s)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers import until

pytestmark = pytest.mark.slow
MONTRG = str(Path(sys.executable).with_name("montrg"))
SLA_MINUTES = 0.5


@pytest.fixture
def webhook():
    """A loopback HTTP server that keeps the JSON bodies POSTed to it."""
    from deployments.faults import Webhook

    server = Webhook()
    try:
        yield server.url, server.received
    finally:
        server.close()


async def test_sla_failed_runs_and_alerts_notify(full_prefect_server, webhook):
    from prefect.blocks.notifications import CustomWebhookNotificationBlock
    from prefect.client.orchestration import get_client
    from prefect.events import Event
    from prefect.events.clients import PrefectEventsClient
    from prefect.settings import PREFECT_API_URL, temporary_settings
    from prefect.states import Completed, Failed, Pending, Running

    url, received = webhook
    env = full_prefect_server
    api = env["PREFECT_API_URL"]

    def bodies(word: str) -> list[str]:
        return [b["subject"] + " | " + b["body"] for b in received if word in b["subject"]]

    with temporary_settings({PREFECT_API_URL: api}):
        await CustomWebhookNotificationBlock(
            name="plant-team", url=url, json_data={"subject": "{{subject}}", "body": "{{body}}"}
        ).save("plant-team", overwrite=True)
        done = subprocess.run([MONTRG, "automations", "apply", "--notify", "custom-webhook/plant-team",
                               "--sla-minutes", str(SLA_MINUTES)], env=env, capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stdout + done.stderr
        assert "created automation montrg-hourly-sla" in done.stdout

        async with get_client() as client:
            flow_id = await client.create_flow_from_name("temperature-etl")
            deployment_id = await client.create_deployment(flow_id=flow_id, name="hourly")
            on_time = await client.create_flow_run_from_deployment(deployment_id, name="on-time-run")
            late = await client.create_flow_run_from_deployment(deployment_id, name="late-run")
            # the on-time run is due first and completes; its SLA window would end first
            for state in (Pending(), Running(), Completed()):
                await client.set_flow_run_state(on_time.id, state, force=True)
            await client.set_flow_run_state(late.id, Pending(), force=True)  # taken by a worker, never finishes

            other_flow = await client.create_flow_from_name("master-etl")
            failing = await client.create_flow_run_from_deployment(
                await client.create_deployment(flow_id=other_flow, name="daily"), name="failing-run"
            )
            for state in (Pending(), Running(), Failed(message="HQ database does not answer")):
                await client.set_flow_run_state(failing.id, state, force=True)

        async with PrefectEventsClient(api) as events:
            await events.emit(Event(
                event="montrg.coverage.low", resource={"prefect.resource.id": "montrg.location.L7"},
                payload={"loc_id": "L7", "measure": "coverage", "level": "red", "replaces": None,
                         "message": "L7 sent no readings at 2026-11-30 10:00 (360 expected)"},
            ))

        await until(lambda: now(bodies("late-run")), 150, "the SLA notification of late-run")
        await until(lambda: now(bodies("failing-run")), 60, "the failed-run notification")
        await until(lambda: now(bodies("coverage at L7")), 60, "the coverage notification")

    sla = bodies("hourly job late")
    assert len(sla) == 1 and "late-run" in sla[0] and "Pending" in sla[0]  # on-time-run: none
    assert str(late.id) in sla[0]  # the run's link
    failed = bodies("failing-run")
    assert len(failed) == 1 and "Failed" in failed[0] and "HQ database does not answer" in failed[0] and str(failing.id) in failed[0]
    assert bodies("coverage at L7") == ["flet-montrg: red coverage at L7 | L7 sent no readings at 2026-11-30 10:00 (360 expected)"]


async def now(value):
    """`value`, awaitable: `until` polls a check that is already computed."""
    return value
