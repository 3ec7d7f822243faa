"""Database I/O on PostgreSQL, MariaDB and SQLite: the public face of this package.

Fast paths where the dialect has one: PostgreSQL and MariaDB aggregate in the source; PostgreSQL
is read through ADBC into Arrow/Polars and written by binary COPY (straight into the table when a
range is new, else into a temporary table followed by one INSERT ... ON CONFLICT). MariaDB and
SQLite use their own upserts through SQLAlchemy. Every write is one transaction.

connection.py: a database behind a block, table checks, the write lock; adbc.py: PostgreSQL reads
into Polars; writes.py: COPY, staging and upserts every writer shares; watermarks.py: how far a job
got; raw.py: raw readings and the device table; hourly.py: hourly aggregates; master.py: master
data; alerts.py: alerts. This file exports what callers outside the package use, nothing more.
"""

from flows.errors import SourceDataError
from flows.store.adbc import read_adbc
from flows.store.alerts import read_open_alerts, record_alerts
from flows.store.connection import SCHEMA_PARAMETER, Database, missing_tables, ping
from flows.store.episodes import EpisodeFacts, acknowledge, mute, read_episodes, read_mutes, unmute
from flows.store.hourly import read_hourly, read_partial_hourly, source_horizon, write_hourly
from flows.store.master import (
    MASTER_TABLES,
    apply_master_changes,
    master_tables,
    read_locations,
    read_master,
    read_thresholds,
)
from flows.store.raw import (
    WriteResult,
    estimate_raw_rows,
    insert_raw,
    iter_device_rows,
    read_device_range,
    read_raw,
    read_sensors,
    write_readings,
)
from flows.store.watermarks import extend_watermark, get_watermark
from flows.store.writes import read_rows, upsert_rows

__all__ = [
    "MASTER_TABLES",
    "Database",
    "EpisodeFacts",
    "SCHEMA_PARAMETER",
    "SourceDataError",
    "WriteResult",
    "acknowledge",
    "apply_master_changes",
    "estimate_raw_rows",
    "extend_watermark",
    "get_watermark",
    "insert_raw",
    "iter_device_rows",
    "master_tables",
    "missing_tables",
    "mute",
    "ping",
    "read_adbc",
    "read_device_range",
    "read_episodes",
    "read_hourly",
    "read_locations",
    "read_master",
    "read_mutes",
    "read_open_alerts",
    "read_partial_hourly",
    "read_raw",
    "read_rows",
    "read_sensors",
    "read_thresholds",
    "record_alerts",
    "source_horizon",
    "unmute",
    "write_hourly",
    "upsert_rows",
    "write_readings",
]
