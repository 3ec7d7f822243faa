"""The core imports without Prefect (a fresh interpreter, as `python -X importtime` sees it), and
`from flows import ...` still gives the flows."""

from __future__ import annotations

import subprocess
import sys

CORE = ["windows", "aggregate", "readings", "validate", "errors", "streams", "settings", "alerts", "master", "schema"]


def test_flows_core_imports_no_prefect():
    probe = f"import sys; import {', '.join('flows.core.' + m for m in CORE)}; print(sorted(m for m in sys.modules if m.split('.')[0] == 'prefect'))"
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


def test_the_flows_are_flows_even_after_their_modules_are_imported():
    probe = (
        "import flows.temperature_etl, flows.temperature_backfill\n"  # the modules of the same names first
        "from flows import temperature_etl, temperature_backfill\n"
        "import flows\n"
        "print(type(temperature_etl).__name__, type(temperature_backfill).__name__, type(flows.master_etl).__name__)"
    )
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["Flow", "Flow", "Flow"]
