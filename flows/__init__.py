"""flet-montrg's Prefect flows: `from flows import temperature_etl`.

Each flow is an async Prefect flow; its Prefect name is the kebab-case of its function name.
Prefect's local defaults (flows.core.settings.PREFECT_LOCAL_DEFAULTS) are put into the
environment first: Prefect reads its settings when it is imported.
"""

from flows.core.settings import apply_prefect_defaults

apply_prefect_defaults()

from flows.master_etl import master_etl  # noqa: E402
from flows.sensor_collect import sensor_collect  # noqa: E402
from flows.temperature_backfill import temperature_backfill  # noqa: E402
from flows.temperature_etl import temperature_etl  # noqa: E402
from flows.temperature_raw_backfill import temperature_raw_backfill  # noqa: E402
from flows.temperature_raw_etl import temperature_raw_etl  # noqa: E402

__all__ = [
    "master_etl",
    "sensor_collect",
    "temperature_backfill",
    "temperature_etl",
    "temperature_raw_backfill",
    "temperature_raw_etl",
]
