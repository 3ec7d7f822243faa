"""flet-montrg's Prefect flows: `from flows import temperature_etl`.

Each flow is an async Prefect flow; its Prefect name is the kebab-case of its function name.
"""

from flows.master_etl import master_etl
from flows.sensor_collect import sensor_collect
from flows.temperature_backfill import temperature_backfill
from flows.temperature_etl import temperature_etl
from flows.temperature_raw_backfill import temperature_raw_backfill
from flows.temperature_raw_etl import temperature_raw_etl

__all__ = [
    "master_etl",
    "sensor_collect",
    "temperature_backfill",
    "temperature_etl",
    "temperature_raw_backfill",
    "temperature_raw_etl",
]
