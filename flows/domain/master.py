"""Master data sync, the pure part: what changed between source and target, and what is invalid.

Polars in, Polars out. A row is compared on every column but `upd_dt`; rows gone from the source
are deactivated in the target (never deleted: hourly data and alerts still refer to them).
"""

from __future__ import annotations

from dataclasses import dataclass

import polars as pl

from flows.domain.measures import MEASURES, THRESHOLD_LEVELS


@dataclass(frozen=True)
class MasterTable:
    """A master table as the sync sees it: its name, key and the columns compared and copied
    (all but upd_dt, which the target sets). The store lists them (flows.store.master.MASTER_TABLES)."""

    name: str
    key: str
    columns: tuple[str, ...]


@dataclass
class Changes:
    """What a sync does to one table. `rejected` rows (with a `problem`) are not loaded."""

    table: MasterTable
    inserts: pl.DataFrame
    updates: pl.DataFrame
    deactivate: list[object]
    rejected: pl.DataFrame

    def counts(self) -> dict[str, object]:
        return {
            "table": self.table.name,
            "inserted": self.inserts.height,
            "updated": self.updates.height,
            "deactivated": len(self.deactivate),
            "rejected": self.rejected.height,
        }


def diff(spec: MasterTable, source: pl.DataFrame, target: pl.DataFrame, rejected: pl.DataFrame) -> Changes:
    """Inserts, updates and deactivations that make `target` match `source` minus `rejected`."""
    key = spec.key
    source = source.join(rejected.select(key), on=key, how="anti")
    new = source.join(target.select(key), on=key, how="anti")
    existing = source.join(target.select(key), on=key, how="semi")
    changed = existing.join(target.select(spec.columns), on=list(spec.columns), how="anti", nulls_equal=True)
    gone = target.filter(pl.col("is_active")).join(source.select(key), on=key, how="anti")
    # a rejected row keeps whatever the target had: neither updated nor deactivated
    gone = gone.join(rejected.select(key), on=key, how="anti")
    return Changes(spec, new, changed, gone[key].to_list(), rejected)


def bad_thresholds(df: pl.DataFrame) -> pl.DataFrame:
    """Thresholds that cannot be used: unknown measure or level, or min_value > max_value."""
    problem = pl.concat_str(
        [
            pl.when(~pl.col("threshold_type").is_in(list(MEASURES))).then(
                pl.format("unknown measure {} (expected one of " + ", ".join(MEASURES) + ")", "threshold_type")
            ),
            pl.when(~pl.col("level").is_in(list(THRESHOLD_LEVELS))).then(
                pl.format("unknown level {} (expected one of " + ", ".join(THRESHOLD_LEVELS) + ")", "level")
            ),
            pl.when(pl.col("min_value") > pl.col("max_value")).then(
                pl.format("min_value {} > max_value {}", "min_value", "max_value")
            ),
        ],
        separator="; ",
        ignore_nulls=True,
    )
    return _flagged(df, problem)


def bad_locations(df: pl.DataFrame) -> pl.DataFrame:
    """Locations whose poll_interval_s cannot give an expected reading count (not 0.1..3600 s)."""
    interval = pl.col("poll_interval_s")
    problem = pl.when(interval.is_not_null() & ~interval.is_between(0.1, 3600)).then(
        pl.format("poll_interval_s {} is not 0.1..3600 seconds", interval)
    )
    return _flagged(df, problem)


def orphan_sensors(sensor_rows: pl.DataFrame, known_locations: pl.Series) -> pl.DataFrame:
    """Sensors whose loc_id is not a known location."""
    problem = pl.when(~pl.col("loc_id").is_in(known_locations.implode())).then(
        pl.format("sensor {} points at unknown location {}", "sensor_id", "loc_id")
    )
    return _flagged(sensor_rows, problem)


def _flagged(df: pl.DataFrame, problem: pl.Expr) -> pl.DataFrame:
    out = df.with_columns(problem.alias("problem"))
    return out.filter(pl.col("problem").is_not_null() & (pl.col("problem") != ""))
