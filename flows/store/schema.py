"""The flet_montrg tables as SQLAlchemy Core metadata, and the idempotent create-or-upgrade.

Tables are declared in the placeholder schema `flet_montrg`; `Database` maps it to the configured
schema (MONTRG_SCHEMA) or, on SQLite, to no schema at all via `schema_translate_map`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from sqlalchemy import (
    Boolean,
    Column,
    DateTime,
    Double,
    Index,
    Integer,
    MetaData,
    PrimaryKeyConstraint,
    String,
    Table,
    Text,
    UniqueConstraint,
    inspect,
    true,
)
from sqlalchemy.dialects import mysql
from sqlalchemy.engine import Connection
from sqlalchemy.schema import CreateIndex, CreateSchema

from flows.domain.measures import MEASURES

SCHEMA_TOKEN = "flet_montrg"

# DATETIME on MariaDB keeps whole seconds unless told otherwise; keep microseconds everywhere.
Timestamp = DateTime().with_variant(mysql.DATETIME(fsp=6), "mysql", "mariadb")

metadata = MetaData(schema=SCHEMA_TOKEN)

temperature_raw = Table(
    "temperature_raw",
    metadata,
    Column("loc_id", String(64), nullable=False, comment="location id"),
    Column("capture_dt", Timestamp, nullable=False, comment="reading time, plant local"),
    *(Column(m, Double) for m in MEASURES),
    PrimaryKeyConstraint("loc_id", "capture_dt", name="pk_temperature_raw"),
    Index("ix_temperature_raw_capture_dt", "capture_dt"),
    comment="one row per sensor reading (plant local time)",
)

temperature = Table(
    "temperature",
    metadata,
    Column("loc_id", String(64), nullable=False),
    Column("ymd", String(8), nullable=False, comment="YYYYMMDD of capture_dt"),
    Column("hh", String(2), nullable=False, comment="00..23 of capture_dt"),
    *(
        Column(f"{m}_{stat}", Double)
        for m in MEASURES
        for stat in ("max", "avg", "min")
    ),
    *(Column(f"{m}_count", Integer, nullable=True, comment="non-null readings") for m in MEASURES),
    Column("sample_count", Integer, nullable=False, server_default="0", comment="raw rows"),
    Column("coverage", Double, nullable=True, comment="sample_count / readings expected from the polling interval"),
    Column("calc_dt", Timestamp, nullable=True, comment="when the values last changed, plant local"),
    PrimaryKeyConstraint("loc_id", "ymd", "hh", name="pk_temperature"),
    Index("ix_temperature_ymd_hh", "ymd", "hh"),
    comment="hourly max/avg/min per location",
)

temperature_raw_reject = Table(
    "temperature_raw_reject",
    metadata,
    Column("reject_id", Integer, primary_key=True, autoincrement=True),
    Column("source", String(128), nullable=False, comment="device:<block>/<table> or modbus"),
    Column("row_key", String(64), nullable=False, comment="hash of the source row's identity"),
    Column("sensor_id", String(255)),
    Column("loc_id", String(64)),
    Column("capture_dt", Timestamp),
    Column("raw_values", Text, comment="the original values, JSON"),
    Column("reason", String(1000), nullable=False),
    Column("rejected_dt", Timestamp, nullable=False),
    UniqueConstraint("source", "row_key", name="uq_temperature_raw_reject_source_row"),
    Index("ix_temperature_raw_reject_rejected_dt", "rejected_dt"),
    comment="readings that were not loaded, with the reason; never silently dropped",
)

etl_watermark = Table(
    "etl_watermark",
    metadata,
    Column("job_name", String(255), primary_key=True, comment="job, and for raw loads its source"),
    Column("watermark", Timestamp, nullable=False, comment="hours before this are aggregated"),
    Column("updated_dt", Timestamp, nullable=False),
    comment="per job: the end of the last contiguous processed window",
)

# ---- master data (synced IoT -> HQ by master_etl; rows are deactivated, never deleted)

locations = Table(
    "locations",
    metadata,
    Column("loc_id", String(64), primary_key=True),
    Column("plant", String(64)),
    Column("factory", String(64)),
    Column("building", String(64)),
    Column("floor", String(64)),
    Column("area", String(64)),
    Column("location_name", String(255)),
    Column("poll_interval_s", Double, comment="seconds between readings; NULL: the plant default (MONTRG_POLL_INTERVAL_S)"),
    Column("is_active", Boolean, nullable=False, server_default=true()),
    Column("upd_dt", Timestamp, comment="when this row last changed, plant local"),
    comment="sensor locations",
)

sensors = Table(
    "sensors",
    metadata,
    Column("sensor_id", String(64), primary_key=True),
    Column("loc_id", String(64), nullable=False),
    Column("name", String(255)),
    Column("host", String(255), comment="Modbus TCP host"),
    Column("port", Integer, comment="Modbus TCP port"),
    Column("device_id", Integer, comment="Modbus device (unit) id"),
    Column("registers", Text, comment="JSON register map per measure: address, type, scale, word order"),
    Column("is_active", Boolean, nullable=False, server_default=true()),
    Column("upd_dt", Timestamp),
    Index("ix_sensors_loc_id", "loc_id"),
    comment="sensors and how to reach them",
)

thresholds = Table(
    "thresholds",
    metadata,
    Column("threshold_id", Integer, primary_key=True, autoincrement=False),
    Column("threshold_type", String(32), nullable=False, comment="the measure: temperature, humidity, pcv_temperature"),
    Column("level", String(16), nullable=False, comment="green, yellow, orange or red"),
    Column("min_value", Double, comment="lowest value within this level's limits (NULL: none)"),
    Column("max_value", Double, comment="highest value within this level's limits (NULL: none)"),
    Column("loc_id", String(64), comment="NULL: plant default; else an override for this location"),
    Column("is_active", Boolean, nullable=False, server_default=true()),
    Column("upd_dt", Timestamp),
    comment="alert limits per measure and level",
)

alerts = Table(
    "alerts",
    metadata,
    Column("alert_id", Integer, primary_key=True, autoincrement=True),
    Column("alert_time", Timestamp, nullable=False, comment="the hour that breached, plant local"),
    Column("loc_id", String(64), nullable=False),
    Column("measure", String(32), nullable=False),
    Column("level", String(16), nullable=False),
    Column("measured_value", Double, comment="the hour's max (above the limit) or min (below it)"),
    Column("threshold_min", Double),
    Column("threshold_max", Double),
    Column("message", String(500)),
    Column("status", String(16), nullable=False, server_default="open", comment="open or resolved"),
    Column("created_dt", Timestamp),
    Column("resolved_dt", Timestamp),
    Column("notified_dt", Timestamp, comment="when this level was announced (the highest of its hour and measure)"),
    Column("replaced_level", String(16), comment="the level open before, when this one escalated it"),
    UniqueConstraint("loc_id", "alert_time", "measure", "level", name="uq_alerts_loc_hour_measure_level"),
    Index("ix_alerts_alert_time", "alert_time"),
    comment="threshold breaches and coverage gaps of hourly values, one per location, hour, measure and level",
)

alarm_episodes = Table(
    "alarm_episodes",
    metadata,
    Column("episode_id", Integer, primary_key=True, autoincrement=True),
    Column("loc_id", String(64), nullable=False),
    Column("measure", String(32), nullable=False, comment="temperature, humidity, pcv_temperature or coverage"),
    Column("first_hour", Timestamp, nullable=False, comment="the episode's first bad hour, plant local"),
    Column("last_hour", Timestamp, nullable=False, comment="its last bad hour so far"),
    Column("peak_level", String(16), nullable=False, comment="the highest level any of its hours reached"),
    Column("peak_value", Double, comment="the measured value at the peak (coverage: the lowest share)"),
    Column("peak_hour", Timestamp),
    Column("message", String(500), comment="the alert message of the peak hour"),
    Column("notified_level", String(16), comment="the highest level announced; NULL: recorded quietly"),
    Column("state", String(16), nullable=False, server_default="open", comment="open, acknowledged or closed"),
    Column("opened_dt", Timestamp),
    Column("closed_dt", Timestamp),
    Column("closed_hour", Timestamp, comment="the normal hour that closed it (back to normal)"),
    Column("close_reason", String(200), comment="back to normal, repaired by late data, location deactivated, muted, merged"),
    Column("acked_by", String(100)),
    Column("acked_dt", Timestamp),
    Column("ack_note", String(500)),
    UniqueConstraint("loc_id", "measure", "first_hour", name="uq_alarm_episodes_loc_measure_first"),
    Index("ix_alarm_episodes_state", "state"),
    Index("ix_alarm_episodes_last_hour", "last_hour"),
    comment="alarms: consecutive bad hours of one location and measure form one episode (README, alert model)",
)

alarm_mutes = Table(
    "alarm_mutes",
    metadata,
    Column("mute_id", Integer, primary_key=True, autoincrement=True),
    Column("loc_id", String(64), nullable=False),
    Column("starts_dt", Timestamp, nullable=False, comment="plant local; hours from here on raise no alarm"),
    Column("until_dt", Timestamp, nullable=False, comment="plant local; the first moment alarms are raised again"),
    Column("reason", String(500), nullable=False),
    Column("muted_by", String(100)),
    Column("created_dt", Timestamp),
    Index("ix_alarm_mutes_loc_id", "loc_id"),
    comment="planned maintenance: no alarm for a location in [starts_dt, until_dt); its hours are still recorded",
)


@dataclass
class InitReport:
    """What `init_schema` changed; empty lists mean the schema was already up to date."""

    created_schema: bool = False
    created_tables: list[str] = field(default_factory=list)
    added_columns: list[str] = field(default_factory=list)
    created_indexes: list[str] = field(default_factory=list)

    @property
    def changed(self) -> bool:
        return bool(
            self.created_schema or self.created_tables or self.added_columns or self.created_indexes
        )


def init_schema(conn: Connection, schema: str | None) -> InitReport:
    """Create missing schema, tables, columns and indexes; never drops or alters existing ones.

    `conn` must carry the schema_translate_map of its database. Run it in one transaction.
    """
    report = InitReport()
    insp = inspect(conn)
    if schema is not None and schema not in insp.get_schema_names():
        conn.execute(CreateSchema(schema, if_not_exists=True))
        report.created_schema = True
        insp = inspect(conn)
    existing = set(insp.get_table_names(schema=schema))
    for table in metadata.sorted_tables:
        if table.name not in existing:
            table.create(conn)
            report.created_tables.append(table.name)
            continue
        have_cols = {c["name"] for c in insp.get_columns(table.name, schema=schema)}
        for column in table.columns:
            if column.name not in have_cols:
                if not column.nullable and column.server_default is None:
                    raise RuntimeError(
                        f"cannot add NOT NULL column {table.name}.{column.name} without a default"
                    )
                _add_column(conn, schema, table, column)
                report.added_columns.append(f"{table.name}.{column.name}")
        have_idx = {i["name"] for i in insp.get_indexes(table.name, schema=schema)}
        for index in table.indexes:
            if index.name not in have_idx:
                conn.execute(CreateIndex(index))
                report.created_indexes.append(index.name)
    return report


def _add_column(conn: Connection, schema: str | None, table: Table, column: Column) -> None:
    preparer = conn.dialect.identifier_preparer
    name = preparer.quote(table.name)
    if schema is not None:
        name = f"{preparer.quote_schema(schema)}.{name}"
    col_type = column.type.compile(dialect=conn.dialect)
    ddl = f"ALTER TABLE {name} ADD COLUMN {preparer.quote(column.name)} {col_type}"
    if column.server_default is not None:
        default = column.server_default.arg
        if not isinstance(default, str):
            default = default.compile(dialect=conn.dialect)
        ddl += f" DEFAULT {default}"
    if not column.nullable:
        ddl += " NOT NULL"
    conn.exec_driver_sql(ddl)


def device_table(name: str, metadata_: MetaData | None = None) -> Table:
    """The upstream device table that gateways write (originally montrg.dbo.temperature).

    `name` is `table` or `schema.table`. Values t1..t6 are text, as the gateways send them.
    Not created by `montrg db init`: it belongs to the gateways (tests create one like it).
    """
    from flows.settings import check_identifier

    parts = name.split(".")
    try:
        if not 1 <= len(parts) <= 2:
            raise ValueError
        for part in parts:
            check_identifier(part, "device_table")
    except ValueError:
        raise ValueError(
            f"device_table={name!r} is not a valid identifier: expected 'table' or 'schema.table' "
            "of letters, digits and underscores"
        ) from None
    schema, table = (None, parts[0]) if len(parts) == 1 else parts
    return Table(
        table,
        metadata_ if metadata_ is not None else MetaData(),
        Column("sensor_id", String(255)),
        Column("device_id", String(255)),
        Column("capture_dt", Timestamp),
        *(Column(f"t{i}", String(64)) for i in range(1, 7)),
        Column("upload_yn", String(1)),
        Column("upload_dt", Timestamp),
        schema=schema,
    )
