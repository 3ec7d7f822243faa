"""master_etl: locations, sensors and thresholds copied IoT -> HQ (replaces flet_montrg_master_etl)."""

from __future__ import annotations

from typing import Literal

from prefect import task
from prefect.artifacts import acreate_table_artifact
from prefect.logging import get_run_logger

from blocks import open_database
from flows import store
from flows.domain import checks, master
from flows.errors import MasterDataError
from flows.pipelines.params import Flag, checked, flow
from flows.pipelines.policy import RETRYING, require_tables
from flows.pipelines.run_names import master_name, runtime_name
from flows.settings import DEFAULT_SOURCE_BLOCK, DEFAULT_TARGET_BLOCK, plant_now
from flows.store import Database

MASTER_TABLES = store.master_tables()


@task(name="check-master-tables", **RETRYING)
async def check_master_tables(source: Database, target: Database) -> None:
    """Both databases answer and hold the three master tables."""
    await require_tables(source, MASTER_TABLES)
    await require_tables(target, MASTER_TABLES, writes="target_block (the HQ database)")


@task(name="plan-master-changes", **RETRYING)
async def plan_changes(source: Database, target: Database) -> list[master.Changes]:
    """Compare source and target; reject invalid thresholds and orphan sensors by name."""
    plan: list[master.Changes] = []
    source_locations = None
    for spec in store.MASTER_TABLES:
        src = await store.read_master(source, spec)
        tgt = await store.read_master(target, spec)
        if spec.name == "locations":
            source_locations = src["loc_id"]
            rejected = master.bad_locations(src)
        elif spec.name == "sensors":
            rejected = master.orphan_sensors(src, source_locations)
        else:
            rejected = master.bad_thresholds(src)
        plan.append(master.diff(spec, src, tgt, rejected))
    return plan


@task(name="apply-master-changes", **RETRYING)
async def apply_changes(target: Database, plan: list[master.Changes]) -> None:
    """Write the planned changes to the target in one transaction."""
    await store.apply_master_changes(target, plan, plant_now())


@flow(name="master-etl", flow_run_name=runtime_name(master_name), timeout_seconds=30 * 60, validate_parameters=False)
@checked
async def master_etl(
    dry_run: Flag = False,
    orphan_sensors: Literal["warn", "fail"] = "warn",
    source_block: str = DEFAULT_SOURCE_BLOCK,
    target_block: str = DEFAULT_TARGET_BLOCK,
) -> list[dict[str, object]]:
    """Sync locations, sensors and alert thresholds from the IoT to the HQ database.

    Changed rows are upserted; rows that disappeared from the source are marked inactive in the
    target, never deleted (hourly data and alerts still refer to them). Locations load before
    sensors. A sensor pointing at an unknown location is not loaded and is named in the report;
    a threshold with an unknown measure or level, or min_value > max_value, and a location whose
    poll_interval_s is not 0.1..3600 s, are not loaded and fail the run, named. All changes are written in one transaction.

    Args:
        dry_run: Report the changes (inserted / updated / deactivated per table) without writing.
        orphan_sensors: 'warn' (default) loads everything else and warns; 'fail' fails the run.
        source_block: Database block of the IoT database (master data source).
        target_block: Database block of the HQ database (master copy).
    """
    if orphan_sensors not in ("warn", "fail"):
        raise ValueError(f"orphan_sensors={orphan_sensors!r} must be 'warn' or 'fail'")
    if source_block == target_block:
        raise ValueError(
            f"source_block and target_block are both {source_block!r}: master_etl would sync a database onto itself; "
            "give the IoT database as source_block and the HQ database as target_block"
        )
    logger = get_run_logger()
    async with open_database(source_block) as source, open_database(target_block) as target:
        if source.same_tables(target):
            raise ValueError(
                f"source_block={source_block!r} and target_block={target_block!r} are the same database and schema "
                f"({source.describe()}): master_etl would sync it onto itself; point one of the blocks elsewhere"
            )
        await check_master_tables(source, target)
        plan = await plan_changes(source, target)
        counts = [change.counts() for change in plan]
        for row in counts:
            logger.info(
                "%s%s: %d inserted, %d updated, %d deactivated, %d rejected",
                "[dry run] " if dry_run else "", row["table"], row["inserted"], row["updated"],
                row["deactivated"], row["rejected"],
            )
        if not dry_run:
            await apply_changes(target, plan)
    await acreate_table_artifact(
        key="master-etl", table=counts, description=("dry run: nothing written" if dry_run else "master sync")
    )
    by_table = {change.table.name: change.rejected for change in plan}
    if by_table["sensors"].height:
        message = checks.describe(by_table["sensors"].select("sensor_id", "loc_id", "problem"), "sensors not loaded")
        if orphan_sensors == "fail":
            raise MasterDataError(message)
        logger.warning(message)
    bad = [
        checks.describe(by_table["locations"].select("loc_id", "poll_interval_s", "problem"), "locations rejected"),
        checks.describe(
            by_table["thresholds"].select("threshold_id", "threshold_type", "level", "min_value", "max_value", "problem"),
            "thresholds rejected",
        ),
    ]
    bad = [text for text, table in zip(bad, ("locations", "thresholds")) if by_table[table].height]
    if bad:
        raise MasterDataError("\n".join(bad) + ("" if dry_run else "\n(everything else was synced)"))
    return counts
