"""Database I/O on PostgreSQL, MariaDB and SQLite: the public face of this package.

Fast paths where the dialect has one: PostgreSQL and MariaDB aggregate in the source; PostgreSQL
is read through ADBC into Arrow/Polars and written by binary COPY (straight into the table when a
range is new, else into a temporary table followed by one INSERT ... ON CONFLICT). MariaDB and
SQLite use their own upserts through SQLAlchemy. Every write is one transaction.

base.py: connections, locks, shared write paths, watermarks; raw.py: raw readings and the device
table; hourly.py: hourly aggregates; master.py: master data and alerts.
"""

from flows.core.errors import SourceDataError
from flows.core.io.sql.base import (
    BATCH_ROWS,
    SCHEMA_PARAMETER,
    Database,
    extend_watermark,
    get_watermark,
    locked_transaction,
    missing_tables,
    ping,
    polars_schema,
    read_adbc,
    read_rows,
    upsert_rows,
)
from flows.core.io.sql.hourly import UpsertResult, hourly_schema, read_hourly, read_partial_hourly, upsert_hourly
from flows.core.io.sql.master import AlertChanges, apply_master_changes, read_thresholds, record_alerts
from flows.core.io.sql.raw import (
    WriteResult,
    insert_raw,
    iter_device_rows,
    raw_frame,
    read_device_range,
    read_raw,
    read_sensors,
    write_readings,
)

__all__ = [
    "AlertChanges",
    "BATCH_ROWS",
    "Database",
    "SCHEMA_PARAMETER",
    "SourceDataError",
    "UpsertResult",
    "WriteResult",
    "apply_master_changes",
    "extend_watermark",
    "get_watermark",
    "hourly_schema",
    "insert_raw",
    "iter_device_rows",
    "locked_transaction",
    "missing_tables",
    "ping",
    "polars_schema",
    "raw_frame",
    "read_adbc",
    "read_device_range",
    "read_hourly",
    "read_partial_hourly",
    "read_raw",
    "read_rows",
    "read_sensors",
    "read_thresholds",
    "record_alerts",
    "upsert_hourly",
    "upsert_rows",
    "write_readings",
]
