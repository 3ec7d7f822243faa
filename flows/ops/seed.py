"""A simulated plant for the demo, the soak and the benchmarks: Modbus devices on loopback, master
data, history and a gateway's device table with a few malformed rows. Its rows carry the PREFIX
(`DEMO-L...` locations, `DEMO-S...` sensors), so they can be told apart and removed."""

from __future__ import annotations

import json
import sys
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta

import polars as pl
from sqlalchemy import insert

from flows import store
from flows.ops import simulate
from flows.ops.modbus_sim import SilentEndpoint, SimSensor, SimulatedEndpoint
from flows.store import Database
from flows.store.modbus import Register
from flows.store.schema import locations, sensors, thresholds

PREFIX = "DEMO-L"
# the first location runs hot (threshold breaches); the last one's sensor stopped sending an hour
# ago (a coverage alert): its device never answers and the gateway has nothing from it
REGISTERS = {"temperature": Register(1), "humidity": Register(3), "pcv_temperature": Register(5)}
THRESHOLDS = [  # (measure, level, min, max): plant defaults
    ("temperature", "green", 15.0, 28.0),
    ("temperature", "yellow", 10.0, 30.0),
    ("temperature", "red", 5.0, 35.0),
    ("humidity", "yellow", 20.0, 75.0),
    ("humidity", "red", 10.0, 85.0),
]


@dataclass
class FloorSettings:
    locations: int = 30
    history_days: int = 2
    collect_seconds: float = 5.0
    interval_seconds: float = 1.0


async def start_floor(cfg: FloorSettings, now: datetime) -> tuple[SimulatedEndpoint, SilentEndpoint]:
    """The simulated floor: one server with every device but the failing one, which hangs."""
    current = simulate.readings(cfg.locations, now, now + timedelta(seconds=10), hot_locations=1, null_share=0)
    values = current.group_by("loc_id").first().sort("loc_id")
    devices = [
        SimSensor(i + 1, REGISTERS, {m: float(values[m][i]) for m in REGISTERS})
        for i in range(cfg.locations - 1)
    ]
    return await SimulatedEndpoint(devices).start(), await SilentEndpoint().start()


async def seed_master(iot: Database, cfg: FloorSettings, port: int, silent_port: int) -> None:
    registers = json.dumps({m: asdict(r) for m, r in REGISTERS.items()})
    locs = [
        {"loc_id": simulate.location_id(i, PREFIX), "plant": "Demo plant", "factory": "F1", "building": f"B{i // 10 + 1}",
         "floor": str(i % 3 + 1), "area": "assembly", "location_name": f"Line {i + 1}", "is_active": True, "upd_dt": None}
        for i in range(cfg.locations)
    ]
    devs = [
        {"sensor_id": f"DEMO-S{i + 1:03d}", "loc_id": simulate.location_id(i, PREFIX), "name": f"TH sensor {i + 1}",
         "host": "127.0.0.1", "port": silent_port if i == cfg.locations - 1 else port, "device_id": i + 1,
         "registers": registers, "is_active": True, "upd_dt": None}
        for i in range(cfg.locations)
    ]
    limits = [
        {"threshold_id": 900_000 + n, "threshold_type": m, "level": lvl, "min_value": lo, "max_value": hi,
         "loc_id": None, "is_active": True, "upd_dt": None}
        for n, (m, lvl, lo, hi) in enumerate(THRESHOLDS)
    ]
    async with iot.engine.begin() as conn:
        for table, key, rows in ((locations, "loc_id", locs), (sensors, "sensor_id", devs), (thresholds, "threshold_id", limits)):
            await store.upsert_rows(conn, table, [key], pl.DataFrame(rows, infer_schema_length=None))


async def seed_history(iot: Database, cfg: FloorSettings, start: datetime, end: datetime) -> int:
    """A day at a time, with a progress bar on a terminal and a line per day elsewhere (a log, CI)."""
    total, day = 0, start
    bar = sys.stdout.isatty()
    while day < end:
        chunk_end = min(day + timedelta(days=1), end)
        raw = simulate.readings(cfg.locations, day, chunk_end, hot_locations=1, prefix=PREFIX, seed=day.toordinal())
        total += await store.insert_raw(iot, raw)
        done = (chunk_end - start) / (end - start)
        if bar:
            print(f"\r    [{'#' * int(done * 30):<30}] {done:4.0%}  {total:,} readings", end="", flush=True)
        else:
            print(f"    {day:%Y-%m-%d}: {raw.height:,} readings ({done:.0%}, {total:,} in all)", flush=True)
        day = chunk_end
    if bar:
        print()
    return total


async def seed_gateway(iot: Database, gateway, cfg: FloorSettings, start: datetime, end: datetime) -> int:
    """The gateways' last hour as text values, with a few malformed rows the raw ETL must reject."""
    raw = simulate.readings(cfg.locations, start, end, hot_locations=1, prefix=PREFIX, seed=99)
    raw = raw.filter(pl.col("loc_id") != simulate.location_id(cfg.locations - 1, PREFIX))  # the silent sensor
    rows = raw.select(
        pl.col("loc_id").str.replace(PREFIX, "DEMO-S", literal=True).alias("sensor_id"), pl.lit("GW-01").alias("device_id"),
        "capture_dt",
        *(pl.col(m).cast(pl.String).alias(t) for m, t in (("temperature", "t1"), ("humidity", "t2"), ("pcv_temperature", "t3"))),
        *(pl.lit(None, pl.String).alias(t) for t in ("t4", "t5", "t6")),
        pl.lit("Y").alias("upload_yn"), (pl.col("capture_dt") + pl.duration(seconds=20)).alias("upload_dt"),
    ).to_dicts()
    broken = [("t1", ""), ("t1", "ERR"), ("t2", "180.5"), ("t3", "NaN")]
    for n, (column, value) in enumerate(broken):
        rows[100 * (n + 1)][column] = value
    rows.append({**rows[0], "sensor_id": "GW-UNKNOWN-7", "capture_dt": rows[0]["capture_dt"] + timedelta(seconds=1)})
    async with iot.engine.begin() as conn:
        await conn.execute(insert(gateway), rows)
    return len(rows)
