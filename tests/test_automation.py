"""The shipped automation files are valid Prefect automations, listen for what the flows emit,
and name every flow of the project; `montrg automations apply` refuses what it cannot apply."""

from __future__ import annotations

from uuid import uuid4

import pytest
import yaml
from prefect.events.schemas.automations import AutomationCore

import flows
from flows.ops.automations import AUTOMATIONS_DIR, load_specs

FLOWS = ["master_etl", "sensor_collect", "temperature_backfill", "temperature_etl", "temperature_raw_backfill", "temperature_raw_etl"]


def test_every_file_is_a_valid_automation_with_the_block_it_is_given():
    block = uuid4()
    specs = {s["name"]: AutomationCore.model_validate(s) for s in load_specs(AUTOMATIONS_DIR, block, sla_minutes=5, pending_minutes=2.5)}
    assert set(specs) == {"montrg-alert-raised", "montrg-hourly-sla", "montrg-run-failed", "montrg-silent-run-crashed",
                          "montrg-stuck-pending-crashed"}
    alert = specs["montrg-alert-raised"]
    assert alert.trigger.expect == {"montrg.threshold.breached", "montrg.coverage.low"}  # what hourly_chunk emits
    assert alert.actions[0].block_document_id == block
    assert specs["montrg-hourly-sla"].trigger.within.total_seconds() == 300
    stuck = specs["montrg-stuck-pending-crashed"]
    assert stuck.trigger.within.total_seconds() == 150
    assert "2.5 minutes" in stuck.description and "2.5 minutes" in stuck.actions[0].message and "15" not in stuck.actions[0].message
    assert "prefect.flow-run.Running" in stuck.trigger.expect and "prefect.flow-run.Pending" not in stuck.trigger.expect
    named = yaml.safe_load((AUTOMATIONS_DIR / "run-failed.yaml").read_text())["trigger"]["match_related"]["prefect.resource.name"]
    assert sorted(named) == sorted(getattr(flows, f).name for f in FLOWS)


def test_apply_needs_a_notification_block_for_the_files_that_notify(tmp_path):
    with pytest.raises(ValueError, match="alert-raised.yaml sends notifications: give --notify"):
        load_specs(AUTOMATIONS_DIR, None, None)
    (tmp_path / "x.yaml").write_text("name: x\n")
    with pytest.raises(ValueError, match="not an automation"):
        load_specs(tmp_path, uuid4(), None)
