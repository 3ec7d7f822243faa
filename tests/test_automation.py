"""The README's automation file is a valid Prefect automation and matches the alert events."""

from __future__ import annotations

from pathlib import Path

import yaml
from prefect.events.schemas.automations import AutomationCore

FILE = Path(__file__).resolve().parents[1] / "deployments" / "automations" / "threshold-breached.yaml"


def test_automation_file_is_valid_and_listens_for_breaches():
    automation = AutomationCore.model_validate(yaml.safe_load(FILE.read_text()))
    assert automation.trigger.expect == {"montrg.threshold.breached"}
    assert automation.actions[0].type == "send-notification"
