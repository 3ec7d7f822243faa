"""prefect.yaml stays honest: entrypoints resolve to flows and every parameter exists on its flow."""

from __future__ import annotations

import importlib
import inspect
from pathlib import Path

import yaml
from prefect import Flow

ROOT = Path(__file__).resolve().parents[1]


def deployments() -> list[dict]:
    return yaml.safe_load((ROOT / "prefect.yaml").read_text())["deployments"]


def test_entrypoints_resolve_to_flows_and_parameters_exist():
    for deployment in deployments():
        path, name = deployment["entrypoint"].split(":")
        module = importlib.import_module(path.removesuffix(".py").replace("/", "."))
        flow = getattr(module, name)
        assert isinstance(flow, Flow), deployment["entrypoint"]
        accepted = set(inspect.signature(flow.fn).parameters)
        unknown = set(deployment.get("parameters", {})) - accepted
        assert not unknown, f"{deployment['name']}: {sorted(unknown)} are not parameters of {name}"


def test_hourly_schedule_is_seoul_on_the_hour():
    hourly = next(d for d in deployments() if d["entrypoint"].endswith(":temperature_etl"))
    assert hourly["schedules"] == [{"cron": "0 * * * *", "timezone": "Asia/Seoul"}]
    assert hourly["concurrency_limit"] == {"limit": 1, "collision_strategy": "ENQUEUE"}


def test_compose_stack_and_ci_workflow_use_prefect_yaml_as_it_is():
    pools = {d["work_pool"]["name"] for d in deployments()}
    compose = yaml.safe_load((ROOT / "deployments" / "compose.yaml").read_text())
    assert pools == {"montrg-docker"} and "--pool montrg-docker" in compose["services"]["worker"]["command"]
    workflow = (ROOT / ".github" / "workflows" / "ci.yml").read_text()
    assert "make test" in workflow and "prefect --no-prompt deploy --all" in workflow


def test_every_flow_of_the_contract_is_deployed():
    import flows

    deployed = {d["entrypoint"].split(":")[1] for d in deployments()}
    assert deployed == set(flows.__all__)
