"""flet-montrg's Prefect flows: `from flows import temperature_etl`.

Each flow is an async Prefect flow; its Prefect name is the kebab-case of its function name. The
package is layered, each layer importing only the ones below it (docs/layout.md; `make lint`
checks it with import-linter):

    flows.ops        the `montrg` CLI, doctor, automations, demo and its seeding helpers
    flows.pipelines  Prefect tasks and flows, one module per flow
    blocks           the database blocks (a top-level package beside this one)
    flows.store      databases and Modbus: reads, and the execution of plans
    flows.settings   the configuration, read from the environment when asked
    flows.domain     pure rules: frames and values in, frames, values and plans out
    flows.errors     every error of our own

The flows load on first use, so `flows.domain` and the `montrg` command line start without
importing Prefect. Importing this package changes nothing in the environment.
"""

from importlib import import_module
from typing import Any

__all__ = [
    "master_etl",
    "sensor_collect",
    "temperature_backfill",
    "temperature_etl",
    "temperature_raw_backfill",
    "temperature_raw_etl",
]


def __getattr__(name: str) -> Any:
    if name in __all__:
        flow = getattr(import_module(f"flows.pipelines.{name}"), name)
        globals()[name] = flow
        return flow
    raise AttributeError(f"module 'flows' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
