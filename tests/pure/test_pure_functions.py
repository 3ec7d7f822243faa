"""The pure functions behind the flows, each on a small case worked out by hand (no services)."""

from __future__ import annotations

import asyncio

import polars as pl
import pytest

from flows.domain import alerts, master
from flows.pipelines.streams import ahead
from flows.store.modbus import Register, parse_registers


def test_effective_thresholds_let_a_location_override_the_plant_default_and_ignore_inactive_and_green():
    thresholds = pl.DataFrame({
        "threshold_type": ["temperature", "temperature", "temperature", "temperature", "humidity"],
        "level": ["red", "red", "yellow", "green", "red"],
        "min_value": [5.0, 0.0, 10.0, 15.0, 10.0],
        "max_value": [35.0, 40.0, 30.0, 28.0, 85.0],
        "loc_id": [None, "L2", None, None, None],
        "is_active": [True, True, True, True, False],
    })
    got = alerts.effective_thresholds(thresholds, pl.Series(["L1", "L2"])).sort("loc_id", "level")
    assert got.rows() == [
        ("L1", "temperature", "red", 5.0, 35.0),  # the plant default
        ("L1", "temperature", "yellow", 10.0, 30.0),
        ("L2", "temperature", "red", 0.0, 40.0),  # L2's own red replaces the default red
        ("L2", "temperature", "yellow", 10.0, 30.0),  # and keeps the default yellow
    ]  # green never alerts; the inactive humidity threshold is ignored


def test_master_diff_inserts_updates_and_deactivates_but_never_touches_rejected_rows():
    spec = master.MasterTable("locations", "loc_id", ("loc_id", "location_name", "is_active"))
    columns = list(spec.columns)
    def frame(rows):
        return pl.DataFrame([{c: r.get(c) for c in columns} for r in rows], schema={c: pl.String for c in columns} | {"is_active": pl.Boolean})
    source = frame([{"loc_id": "L1", "location_name": "Line 1 (moved)", "is_active": True},
                    {"loc_id": "L2", "location_name": "Line 2", "is_active": True},
                    {"loc_id": "L9", "location_name": "New", "is_active": True},
                    {"loc_id": "L5", "location_name": "bad", "is_active": True}])
    target = frame([{"loc_id": "L1", "location_name": "Line 1", "is_active": True},
                    {"loc_id": "L2", "location_name": "Line 2", "is_active": True},
                    {"loc_id": "L4", "location_name": "Gone", "is_active": True},
                    {"loc_id": "L5", "location_name": "old", "is_active": True}])
    rejected = pl.DataFrame({"loc_id": ["L5"], "problem": ["test"]})
    changes = master.diff(spec, source, target, rejected)
    assert changes.inserts["loc_id"].to_list() == ["L9"]
    assert changes.updates["loc_id"].to_list() == ["L1"]
    assert changes.deactivate == ["L4"]  # gone from the source; L5 is rejected, so kept as it was


def test_ahead_yields_everything_in_order_and_raises_the_producers_error_after_its_items():
    async def produce():
        for n in range(3):
            yield n
        raise ConnectionError("source lost")

    async def consume():
        got = []
        with pytest.raises(ConnectionError, match="source lost"):
            async for item in ahead(produce(), depth=2):
                got.append(item)
        return got

    assert asyncio.run(consume()) == [0, 1, 2]


def test_parse_registers_reads_the_map_and_names_the_bad_entry():
    parsed = parse_registers('{"temperature": {"address": 1}, "humidity": {"address": 3, "type": "int16", "scale": 0.1}}', "S1")
    assert parsed == {"temperature": Register(1), "humidity": Register(3, "int16", 0.1)}
    with pytest.raises(ValueError, match=r"sensor 'S1': registers: humidity type 'int64' is not one of"):
        parse_registers('{"humidity": {"address": 3, "type": "int64"}}', "S1")
    with pytest.raises(ValueError, match=r"sensor 'S2': registers is not JSON"):
        parse_registers("{nope", "S2")
