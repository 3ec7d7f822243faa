"""Raw value validation (pure functions, no services): every reason of a row survives."""

from __future__ import annotations

from datetime import datetime

import polars as pl

from flows.domain import readings

T0 = datetime(2024, 1, 31, 10)
SCHEMA = {"sensor_id": pl.String, "device_id": pl.String, "capture_dt": pl.Datetime("us"),
          **{f"t{i}": pl.String for i in range(1, 7)}, "upload_yn": pl.String, "upload_dt": pl.Datetime("us")}
SENSORS = pl.DataFrame({"sensor_id": ["S1"], "loc_id": ["L1"]})


def parse(*rows: dict) -> readings.Parsed:
    base = {"sensor_id": "S1", "device_id": "GW", "capture_dt": T0, "t1": "20.5", "t2": "40", "t3": "25",
            "t4": None, "t5": None, "t6": None, "upload_yn": "Y", "upload_dt": T0}
    frame = pl.DataFrame([{**base, **r} for r in rows], schema=SCHEMA)
    return readings.parse_device_rows(frame, SENSORS, readings.DEFAULT_VALUE_COLUMNS, readings.DEFAULT_LIMITS, "device:x", T0)


def test_a_long_bad_value_is_quoted_by_a_prefix_and_every_reason_survives():
    parsed = parse({"t1": "x" * 3000, "t2": "150"})
    (reason,) = parsed.rejects["reason"].to_list()
    assert reason == (
        f"t1 (temperature)='{'x' * readings.QUOTE_CHARS}...' (3000 characters) is not a number; "
        "humidity=150.0 outside the physical limits [0, 100]"
    )
    assert '"t1": "' + "x" * 3000 in parsed.rejects["raw_values"][0]  # the original value is kept whole


def test_a_long_unknown_sensor_id_leaves_room_for_the_reason():
    parsed = parse({"sensor_id": "S" * 248, "t3": "NaN"})
    (reason,) = parsed.rejects["reason"].to_list()
    assert reason == f"t3 (pcv_temperature) is NaN; unknown sensor '{'S' * readings.QUOTE_CHARS}...' (248 characters)"
