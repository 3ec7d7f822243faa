"""The pipeline's configuration, in one place.

Every setting is read from the environment when it is used, so a worker, a test or the demo can
change it without code changes:

| variable | default | meaning |
| --- | --- | --- |
| MONTRG_PLANT_TZ | Asia/Seoul | the plant's time zone; raw capture_dt and ymd/hh are plant local time |
| MONTRG_SCHEMA | flet_montrg | the schema of the pipeline's tables (a database on MariaDB; none on SQLite) |
| MONTRG_RETRY_BACKOFF_S | 5 | first wait before a task retries a lost connection (then x2, x4, x8, x16) |
| MONTRG_EARLIEST_DATE | 2000-01-01 | the earliest plant time a flow accepts (the latest: a day after now) |
| MONTRG_POLL_INTERVAL_S | 10 | seconds between a location's readings where `locations.poll_interval_s` is NULL |
| MONTRG_COVERAGE_MIN | 0.8 | an ended hour with fewer than this share of its expected readings raises a coverage alert |
| MONTRG_LIMITS | (readings.DEFAULT_LIMITS) | physical limits per measure, JSON `{"humidity": [0, 100]}`; readings outside are rejected |
| MONTRG_NOTIFY_HOURS | 24 | alerts of hours older than this (plant time) are recorded without an event (backfills) |
| MONTRG_PENDING_MINUTES | 15 | a run of the project left Pending (taken by a worker, never started) this long is marked Crashed by the next scheduled run |
"""

from __future__ import annotations

import json
import os
import re
from datetime import datetime
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from flows.domain.readings import DEFAULT_LIMITS, merge_limits

DEFAULT_SOURCE_BLOCK = "pg-fdw-v1-iot"  # what the hourly flows and master_etl read
DEFAULT_IOT_BLOCK = DEFAULT_SOURCE_BLOCK  # the same IoT database, which the raw flows load into
DEFAULT_TARGET_BLOCK = "pg-fdw-v2-hq"
DEFAULT_DEVICE_BLOCK = "montrg-device"
DEFAULT_DEVICE_TABLE = "dbo.temperature"
DEFAULT_POOL = "montrg-docker"
CHUNK_QUEUE = "backfill-chunks"  # the work queue of fanned-out backfill chunks (flows/pipelines/fanout.py)

# Tunables, measured on the 2-core machines this runs on (docs/performance.md)
IN_FLIGHT = 3  # hourly chunks under way at once: two aggregating in the source while one writes
BATCH_ROWS = 5_000  # rows per statement where a write goes through SQLAlchemy (MariaDB, SQLite)
LOCK_TIMEOUT_S = 600  # the longest a writer waits for another's table lock (MariaDB GET_LOCK)
PUSHDOWN_WORK_MEM = "256MB"  # PostgreSQL work_mem for the source's hourly aggregation, that transaction only

# Prefect settings for local commands (montrg, the demo, tests, benchmarks): start the temporary
# API server patiently on small machines, no telemetry. Prefect reads its settings when it is
# imported, so these are applied by `import flows`, before anything imports Prefect.
PREFECT_LOCAL_DEFAULTS = {
    "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "120",
    "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
}


def apply_prefect_defaults() -> None:
    """Set PREFECT_LOCAL_DEFAULTS in the environment where they are not set already."""
    for name, value in PREFECT_LOCAL_DEFAULTS.items():
        os.environ.setdefault(name, value)

_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,62}")


def plant_tz() -> ZoneInfo:
    """The plant's time zone (MONTRG_PLANT_TZ, default Asia/Seoul)."""
    name = os.environ.get("MONTRG_PLANT_TZ", "Asia/Seoul")
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ValueError(f"MONTRG_PLANT_TZ={name!r} is not a known time zone") from exc


def earliest_time() -> datetime:
    """The earliest plant time any flow accepts (MONTRG_EARLIEST_DATE, default 2000-01-01)."""
    raw = os.environ.get("MONTRG_EARLIEST_DATE", "2000-01-01")
    try:
        value = datetime.strptime(raw, "%Y-%m-%d")
    except ValueError:
        raise ValueError(f"MONTRG_EARLIEST_DATE={raw!r} is not a date YYYY-MM-DD") from None
    if not datetime(1900, 1, 1) <= value <= datetime(2100, 1, 1):
        raise ValueError(f"MONTRG_EARLIEST_DATE={raw!r} must be 1900-01-01..2100-01-01")
    return value


def plant_now() -> datetime:
    """The wall clock in plant local time, naive (the convention of every table)."""
    return datetime.now(plant_tz()).replace(tzinfo=None)


def schema_name() -> str:
    """The schema of the pipeline's tables (MONTRG_SCHEMA, default flet_montrg)."""
    name = os.environ.get("MONTRG_SCHEMA", "flet_montrg")
    return check_identifier(name, "MONTRG_SCHEMA")


def check_identifier(name: str, where: str) -> str:
    """Return `name` if it is a plain SQL identifier, else raise naming it and where it came from."""
    if not _IDENTIFIER.fullmatch(name):
        raise ValueError(
            f"{where}={name!r} is not a valid identifier "
            "(letters, digits and underscores, not starting with a digit, at most 63 characters)"
        )
    return name


def retry_backoff_seconds() -> float:
    """First retry delay after a lost connection (MONTRG_RETRY_BACKOFF_S, default 5 s); read once, when
    the tasks are defined (on `import flows`), so it belongs in the environment the process starts with."""
    raw = os.environ.get("MONTRG_RETRY_BACKOFF_S", "5")
    try:
        value = float(raw)
    except ValueError:
        raise ValueError(f"MONTRG_RETRY_BACKOFF_S={raw!r} is not a number of seconds") from None
    if not 0 <= value <= 3600:
        raise ValueError(f"MONTRG_RETRY_BACKOFF_S={raw!r} must be 0..3600")
    return value


def _number(name: str, default: str, lo: float, hi: float, what: str) -> float:
    raw = os.environ.get(name, default)
    try:
        value = float(raw)
    except ValueError:
        raise ValueError(f"{name}={raw!r} is not {what}") from None
    if not lo <= value <= hi:
        raise ValueError(f"{name}={raw!r} must be {lo:g}..{hi:g}")
    return value


def poll_interval_seconds() -> float:
    """The plant's default seconds between a location's readings (MONTRG_POLL_INTERVAL_S, default 10)."""
    return _number("MONTRG_POLL_INTERVAL_S", "10", 0.1, 3600, "a number of seconds")


def coverage_min() -> float:
    """The share of expected readings below which an hour raises a coverage alert (MONTRG_COVERAGE_MIN, 0.8)."""
    return _number("MONTRG_COVERAGE_MIN", "0.8", 0, 1, "a share such as 0.8")


def notify_hours() -> float:
    """How many hours back an alert still notifies (MONTRG_NOTIFY_HOURS, default 24)."""
    return _number("MONTRG_NOTIFY_HOURS", "24", 0, 1_000_000, "a number of hours")


def pending_minutes() -> float:
    """How long a run may stay Pending before a scheduled run marks it Crashed (MONTRG_PENDING_MINUTES, default 15)."""
    return _number("MONTRG_PENDING_MINUTES", "15", 1, 24 * 60, "a number of minutes")


def plant_limits() -> dict[str, tuple[float, float]]:
    """The plant's physical limits: readings.DEFAULT_LIMITS, with MONTRG_LIMITS (JSON, e.g.
    '{"pcv_temperature": [-40, 300]}') over them. The raw load rejects readings outside them and
    the hourly aggregation leaves them out of every average."""
    raw = os.environ.get("MONTRG_LIMITS", "").strip()
    if not raw:
        return dict(DEFAULT_LIMITS)
    try:
        given = json.loads(raw)
    except json.JSONDecodeError:
        raise ValueError(f"MONTRG_LIMITS={raw[:80]!r} is not JSON like {{\"humidity\": [0, 100]}}") from None
    if not isinstance(given, dict):
        raise ValueError(f"MONTRG_LIMITS={raw[:80]!r} must map measures to [low, high]")
    return merge_limits(DEFAULT_LIMITS, given, "MONTRG_LIMITS")
