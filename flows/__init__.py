"""flet-montrg's Prefect flows: `from flows import temperature_etl`.

Each flow is an async Prefect flow; its Prefect name is the kebab-case of its function name.
The flows load on first use, so `flows.core` (no Prefect in there) and the `montrg` command line
start without importing Prefect; Prefect's local defaults (flows.core.settings) are put into the
environment first, since Prefect reads its settings when it is imported.
"""

import sys
import types
from importlib import import_module
from typing import Any

from flows.core.settings import apply_prefect_defaults

apply_prefect_defaults()

__all__ = [
    "master_etl",
    "sensor_collect",
    "temperature_backfill",
    "temperature_etl",
    "temperature_raw_backfill",
    "temperature_raw_etl",
]


class _Flows(types.ModuleType):
    """The package, where `flows.temperature_etl` is always the flow: importing the module of the
    same name (flows/temperature_etl.py) does not replace it (the module stays in sys.modules)."""

    def __setattr__(self, name: str, value: Any) -> None:
        if name in __all__ and isinstance(value, types.ModuleType):
            return
        super().__setattr__(name, value)

    def __getattr__(self, name: str) -> Any:
        if name in __all__:
            flow = getattr(import_module(f"flows.{name}"), name)
            super().__setattr__(name, flow)
            return flow
        raise AttributeError(f"module 'flows' has no attribute {name!r}")

    def __dir__(self) -> list[str]:
        return sorted({*super().__dir__(), *__all__})


sys.modules[__name__].__class__ = _Flows
