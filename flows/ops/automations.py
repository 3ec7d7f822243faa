"""`montrg automations apply`: the shipped automations (deployments/automations/*.yaml) on the
Prefect server, their notifications sent through one notification block.

Each file is one automation, named in the file; applying replaces an automation of the same name,
so running it again (after editing a file, or with another block) leaves one of each.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from uuid import UUID

import yaml

AUTOMATIONS_DIR = Path(__file__).resolve().parents[2] / "deployments" / "automations"
SLA_FILE = "hourly-sla.yaml"
PENDING_FILE = "stuck-pending-crashed.yaml"


@dataclass
class Applied:
    created: list[str] = field(default_factory=list)
    replaced: list[str] = field(default_factory=list)
    block: str = ""


def load_specs(folder: Path, block_id: UUID | None, sla_minutes: float | None, pending_minutes: float | None = None) -> list[dict]:
    """The automation files of `folder`, notifications pointed at `block_id`, the hourly SLA's
    window set to `sla_minutes` and the stuck-Pending one's to `pending_minutes`. A file that needs
    a block when none is given is an error."""
    windows = {SLA_FILE: sla_minutes, PENDING_FILE: pending_minutes}
    specs = []
    for path in sorted(folder.glob("*.yaml")):
        spec = yaml.safe_load(path.read_text())
        if not isinstance(spec, dict) or "trigger" not in spec or "name" not in spec:
            raise ValueError(f"{path}: not an automation (no name or trigger)")
        for action in spec.get("actions", []):
            if action.get("type") == "send-notification":
                if block_id is None:
                    raise ValueError(f"{path.name} sends notifications: give --notify <notification block>")
                action["block_document_id"] = str(block_id)
        minutes = windows.get(path.name)
        if minutes is not None:
            _set_window(spec, minutes)
        specs.append(spec)
    if not specs:
        raise ValueError(f"no automation files (*.yaml) in {folder}")
    return specs


def _set_window(spec: dict, minutes: float) -> None:
    """The trigger's window in minutes, and the texts that state the file's window."""
    stated = f"{spec['trigger']['within'] / 60:g} minutes"
    spec["trigger"]["within"] = minutes * 60
    spec["description"] = spec["description"].replace(stated, f"{minutes:g} minutes")
    for action in spec.get("actions", []):
        if action.get("message"):
            action["message"] = action["message"].replace(stated, f"{minutes:g} minutes")


async def find_notification_block(client, ref: str) -> UUID:
    """The id of the notification block `ref`: `<block-type-slug>/<name>` or a name that only one
    notification block has."""
    slug, _, name = ref.rpartition("/")
    notifiers = [
        d for d in await client.read_block_documents(include_secrets=False)
        if d.block_schema is not None and "notify" in d.block_schema.capabilities and d.block_type is not None
    ]
    matches = [d for d in notifiers if d.name == name and (not slug or d.block_type.slug == slug)]
    if len(matches) != 1:
        known = sorted(f"{d.block_type.slug}/{d.name}" for d in notifiers)
        what = "no notification block" if not matches else f"{len(matches)} notification blocks"
        raise ValueError(
            f"--notify {ref!r}: {what} of that name; notification blocks on this server: {', '.join(known) or 'none'} "
            "(create one in the UI: Blocks > Add > Slack Webhook, Microsoft Teams Webhook, Custom Webhook, ...)"
        )
    return matches[0].id


async def apply(notify: str | None, folder: Path = AUTOMATIONS_DIR, sla_minutes: float | None = None,
                pending_minutes: float | None = None) -> Applied:
    """Create (or replace, by name) every automation of `folder` on the Prefect server."""
    from prefect.client.orchestration import get_client
    from prefect.events.schemas.automations import AutomationCore

    for option, minutes in (("--sla-minutes", sla_minutes), ("--pending-minutes", pending_minutes)):
        if minutes is not None and not 0 < minutes <= 24 * 60:
            raise ValueError(f"{option} {minutes:g} must be more than 0 and at most 1440")
    async with get_client() as client:
        block_id = await find_notification_block(client, notify) if notify else None
        specs = load_specs(folder, block_id, sla_minutes, pending_minutes)
        automations = [AutomationCore.model_validate(spec) for spec in specs]
        applied = Applied(block=notify or "")
        for automation in automations:
            existing = await client.read_automations_by_name(automation.name)
            for old in existing:
                await client.delete_automation(old.id)
            await client.create_automation(automation)
            (applied.replaced if existing else applied.created).append(automation.name)
    return applied
