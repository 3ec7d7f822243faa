"""Runs left Pending: marked Crashed by the project's next scheduled run.

A worker moves a run to Pending before it starts the run's container. When the Prefect server
dies at that moment (or the worker does), nothing moves the run on: it sends no heartbeat yet, and
it holds its deployment's concurrency slot, so with a limit of 1 (the hourly job) the deployment's
next runs wait in AwaitingConcurrencySlot. The shipped automation stuck-pending-crashed.yaml ends
such a run when the server saw its Pending event; a server SIGKILLed right after the transition
never sees it (tests/test_server_restart.py). So the scheduled flows also look, at their start,
for runs of the project (tag flet-montrg) Pending for longer than MONTRG_PENDING_MINUTES and mark
them Crashed, which gives the slot back; the next scheduled run of that deployment does its work.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

PROJECT_TAG = "flet-montrg"  # prefect.yaml tags every deployment with it; their runs carry it


async def crash_stuck_pending(minutes: float | None = None, logger=None) -> list[str]:
    """Mark the project's runs Pending for more than `minutes` (default MONTRG_PENDING_MINUTES)
    Crashed; return their names. Only runs of deployments (a flow called in Python is never Pending)."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterState, FlowRunFilterStateType, FlowRunFilterTags
    from prefect.client.schemas.objects import StateType
    from prefect.states import Crashed

    from flows.settings import pending_minutes

    limit = pending_minutes() if minutes is None else minutes
    cutoff = datetime.now(UTC) - timedelta(minutes=limit)
    ended = []
    async with get_client() as client:
        pending = await client.read_flow_runs(flow_run_filter=FlowRunFilter(
            state=FlowRunFilterState(type=FlowRunFilterStateType(any_=[StateType.PENDING])),
            tags=FlowRunFilterTags(all_=[PROJECT_TAG])), limit=200)
        for run in pending:
            since = run.state.timestamp if run.state else None
            if since is None or since > cutoff:
                continue
            message = (f"Pending since {since:%Y-%m-%d %H:%M:%S} UTC, more than {limit:g} minutes without starting: its worker, "
                       "container or the Prefect server was lost while it was being submitted. The next scheduled run does its work.")
            answer = await client.set_flow_run_state(run.id, Crashed(message=message))
            if answer.state is not None and answer.state.is_crashed():
                ended.append(run.name)
                if logger is not None:
                    logger.warning("run %s (%s) was %s", run.name, run.id, message[0].lower() + message[1:])
    return ended


async def look_after_stuck_runs(logger) -> None:
    """In a run of a deployment: end the project's runs left Pending (crash_stuck_pending). Never
    fails the run that looks: a failed look is logged and the next run looks again."""
    from prefect.context import FlowRunContext

    context = FlowRunContext.get()  # prefect.runtime.deployment.id would ask the server (80 ms)
    if context is None or context.flow_run is None or context.flow_run.deployment_id is None:
        return
    try:
        await crash_stuck_pending(logger=logger)
    except Exception as exc:  # noqa: BLE001 - housekeeping beside the data work; logged, retried by the next run
        logger.warning("could not look for runs left Pending: %s: %s", type(exc).__name__, exc)
