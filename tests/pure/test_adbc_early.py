"""A raw load on a PostgreSQL device table imports the ADBC driver (with pyarrow and NumPy) in a
background thread as soon as the device database is open, so the first read does not wait for it;
a device table on any other database never imports it. Each case runs in a fresh interpreter,
where nothing has imported the driver yet."""

from __future__ import annotations

import subprocess
import sys

import pytest

PROBE = """
import sys, threading
from flows.store import Database
from flows.store.adbc import DRIVER, import_driver_early
assert DRIVER not in sys.modules and "pyarrow" not in sys.modules, "imported before the call"
db = Database.from_url("device", {url!r})
import_driver_early(db)
for thread in threading.enumerate():
    if thread.name == "montrg-import-adbc":
        thread.join(timeout=60)
print(DRIVER in sys.modules, "pyarrow" in sys.modules)
"""


@pytest.mark.parametrize(
    "url,imported",
    [
        ("postgresql+asyncpg://montrg@127.0.0.1:5432/device", "True True"),
        ("mysql+asyncmy://montrg@127.0.0.1:3306/device", "False False"),
        ("sqlite+aiosqlite:///device.db", "False False"),
    ],
)
def test_the_adbc_driver_is_imported_early_only_for_postgresql(url, imported):
    out = subprocess.run([sys.executable, "-c", PROBE.format(url=url)], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stdout.split("\n")[-2] == imported
