"""The Prefect layer: tasks and flows, one module per flow (hourly.py: the chunk both hourly flows
share; raw.py: the tasks both raw flows share).

Prefect reads its settings when it is imported, so this package, the entry point of every flow,
puts Prefect's local defaults into the environment first (flows.settings.apply_prefect_defaults).

It also spares a flow's process the collection of the objects its imports made (about 190,000:
Prefect, Pydantic, SQLAlchemy, Polars), which live as long as the process anyway:
- at exit, gc.freeze() before the interpreter's final collections (registered here, so it runs
  after the atexit handlers Prefect registers later: logs and events are flushed first): 0.4 s
  of every run's exit on this machine;
- at a process's first flow call (params.checked), once: a full collection during the run no
  longer walks them (0.1 s of a raw load). Objects made during runs are collected as usual.
"""

import atexit
import gc

from flows.settings import apply_prefect_defaults

apply_prefect_defaults()
atexit.register(gc.freeze)
