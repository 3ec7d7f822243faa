"""A flow's process does not spend its time collecting what its imports made
(flows/pipelines/__init__.py): frozen once at the first flow call and at exit; what runs make is
collected as usual."""

from __future__ import annotations

import subprocess
import sys


def _run(code: str) -> str:
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-3000:]
    return out.stdout


def test_the_first_flow_call_freezes_what_the_imports_made_and_later_garbage_is_still_collected():
    code = (
        "import asyncio, gc\n"
        "from flows.pipelines.params import checked\n"
        "@checked\n"
        "async def f(n: int = 1) -> int:\n"
        "    return n\n"
        "before = gc.get_freeze_count()\n"
        "asyncio.run(f())\n"
        "first = gc.get_freeze_count()\n"
        "class Cycle: pass\n"
        "for _ in range(100):\n"
        "    c = Cycle(); c.me = c\n"  # garbage made by a run: the next call must not freeze it
        "del c\n"
        "asyncio.run(f(n='2'))\n"
        "print(before, first, gc.get_freeze_count(), gc.collect())\n"
    )
    before, first, second, collected = map(int, _run(code).split())
    assert before == 0
    assert first > 10_000  # the objects of the imports (Prefect, Pydantic, Polars: about 190,000)
    assert second == first  # once per process
    assert collected >= 100  # the runs' own cycles are collected


def test_at_exit_the_final_collection_skips_what_the_process_holds():
    code = (
        "import flows.pipelines\n"
        "class Noisy:\n"
        "    def __del__(self):\n"
        "        print('collected at exit', flush=True)\n"
        "n = Noisy(); n.me = n\n"
    )
    assert "collected at exit" not in _run(code)
    # the same object without the flows' package: the interpreter's final collection finds it
    assert "collected at exit" in _run(code.replace("import flows.pipelines\n", ""))
