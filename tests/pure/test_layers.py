"""The layers hold (import-linter's contracts in pyproject.toml, as `make lint` runs them), the pure
layers import without Prefect and without touching the environment, and `from flows import ...`
gives the flows."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from flows.settings import PREFECT_LOCAL_DEFAULTS

ROOT = Path(__file__).resolve().parents[2]
PURE = ["flows.domain.windows", "flows.domain.aggregate", "flows.domain.readings", "flows.domain.checks",
        "flows.domain.alerts", "flows.domain.health", "flows.domain.master", "flows.errors", "flows.settings",
        "flows.store", "flows.store.schema", "flows.store.modbus"]


def test_the_import_contracts_hold():
    out = subprocess.run([str(Path(sys.executable).parent / "lint-imports")], capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-2000:]
    assert "0 broken" in out.stdout


def test_the_domain_store_and_settings_import_without_prefect_or_changing_the_environment():
    probe = (
        "import os, sys\n"
        "ours = lambda: {k: v for k, v in os.environ.items() if k.startswith(('PREFECT_', 'MONTRG_'))}\n"
        "before = ours()\n"
        f"import {', '.join(PURE)}\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] == 'prefect'), ours() == before)"
    )
    env = {k: v for k, v in os.environ.items() if k not in PREFECT_LOCAL_DEFAULTS}  # as a fresh shell has it
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120, env=env)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["[]", "True"]


def test_the_flows_are_flows_even_after_their_modules_are_imported():
    probe = (
        "import flows.pipelines.temperature_etl, flows.pipelines.temperature_backfill\n"
        "from flows import temperature_etl, temperature_backfill\n"
        "import flows\n"
        "from prefect import Flow\n"
        "print(*(isinstance(f, Flow) for f in (temperature_etl, temperature_backfill, flows.master_etl)))"
    )
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["True", "True", "True"]
