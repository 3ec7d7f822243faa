"""Property tests (hypothesis) over the pure core: hostile values never crash, never vanish."""

from __future__ import annotations

import json
import math
from collections import defaultdict
from datetime import datetime, timedelta

import polars as pl
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from flows.domain import aggregate, checks, readings
from flows.domain.aggregate import RAW_SCHEMA
from flows.store.schema import MEASURES

T0 = datetime(2024, 1, 31, 22)
values = st.one_of(st.none(), st.floats(min_value=-1e9, max_value=1e9, allow_nan=False, allow_infinity=False))
loc_ids = st.text(min_size=1, max_size=80)  # unicode, long, SQL-looking: all just text
raw_rows = st.lists(
    st.tuples(loc_ids, st.integers(0, 6 * 3600), values, values, values), max_size=60
)

SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def python_reference(rows) -> dict:
    """Per (loc, ymd, hh): (max, avg, min, count) per measure and the row count, in plain Python."""
    groups: dict = defaultdict(list)
    for loc, second, *vals in rows:
        ts = T0 + timedelta(seconds=second)
        groups[(loc, ts.strftime("%Y%m%d"), ts.strftime("%H"))].append(vals)
    out = {}
    for key, members in groups.items():
        stats = []
        for i in range(len(MEASURES)):
            present = [m[i] for m in members if m[i] is not None]
            stats.append((max(present), math.fsum(present) / len(present), min(present), len(present)) if present else (None, None, None, 0))
        out[key] = (stats, len(members))
    return out


@SETTINGS
@given(raw_rows)
def test_hourly_aggregation_equals_an_independent_reference(rows):
    # one reading per (location, time), as temperature_raw's key guarantees
    unique = list({(r[0], r[1]): r for r in rows}.values())
    frame = pl.DataFrame(
        [(loc, T0 + timedelta(seconds=s), *v) for loc, s, *v in unique], schema=RAW_SCHEMA, orient="row"
    )
    hourly = aggregate.hourly(frame)
    expected = python_reference(unique)

    assert hourly.height == len(expected)
    assert checks.bad_hourly_values(hourly).is_empty()
    for row in hourly.iter_rows(named=True):
        stats, count = expected[(row["loc_id"], *aggregate.key_of(row["hour"]))]
        assert row["sample_count"] == count
        for measure, (hi, avg, lo, n) in zip(MEASURES, stats):
            assert (row[f"{measure}_max"], row[f"{measure}_min"], row[f"{measure}_count"]) == (hi, lo, n)
            if avg is None:
                assert row[f"{measure}_avg"] is None
            else:
                assert abs(row[f"{measure}_avg"] - avg) <= 5e-5 + 1e-12 * abs(avg)


text_values = st.one_of(
    st.none(),
    st.sampled_from(["", " ", "NaN", "nan", "inf", "-Infinity", "1e400", "12,5", "'; DROP TABLE temperature_raw; --", "٣٤", "25.0\x00"]),
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
    st.text(max_size=12),
)
device_rows = st.lists(
    st.tuples(
        st.one_of(st.none(), st.sampled_from(["S1", "S2", "S3"]), st.text(max_size=300)),
        st.one_of(st.none(), st.integers(0, 3600)),
        text_values, text_values, text_values,
        st.integers(0, 100),
    ),
    max_size=40,
)


@SETTINGS
@given(device_rows)
def test_every_device_row_is_loaded_or_rejected_with_a_reason(rows):
    frame = pl.DataFrame(
        [
            {
                "sensor_id": sid, "device_id": f"R{i}", "capture_dt": None if s is None else T0 + timedelta(seconds=s),
                "t1": a, "t2": b, "t3": c, "t4": None, "t5": None, "t6": None, "upload_yn": "Y",
                "upload_dt": T0 + timedelta(hours=2, seconds=u),
            }
            for i, (sid, s, a, b, c, u) in enumerate(rows)
        ],
        schema={"sensor_id": pl.String, "device_id": pl.String, "capture_dt": pl.Datetime("us"),
                **{f"t{i}": pl.String for i in range(1, 7)}, "upload_yn": pl.String, "upload_dt": pl.Datetime("us")},
    )
    sensors = pl.DataFrame({"sensor_id": ["S1", "S2", "S3"], "loc_id": ["L1", "L2", "L3"]})

    parsed = readings.parse_device_rows(frame, sensors, readings.DEFAULT_VALUE_COLUMNS, readings.DEFAULT_LIMITS, "device:x", T0)

    assert (parsed.rejects["reason"].str.len_chars() > 0).all()
    rejected = [json.loads(raw)["device_id"] for raw in parsed.rejects["raw_values"]]
    assert len(rejected) == len(set(rejected))  # no row rejected twice
    good_keys = set(parsed.good.select("loc_id", "capture_dt").rows())
    loc_of = dict(zip(sensors["sensor_id"], sensors["loc_id"]))
    for i, (sid, s, *_) in enumerate(rows):  # exactly one of: rejected, or its reading is in `good`
        loaded = f"R{i}" not in rejected and sid in loc_of and s is not None and (loc_of[sid], T0 + timedelta(seconds=s)) in good_keys
        assert (f"R{i}" in rejected) != loaded, rows[i]
    assert len(good_keys) == parsed.good.height  # one reading per key
    for m, (lo, hi) in readings.DEFAULT_LIMITS.items():
        col = parsed.good[m].drop_nulls()
        assert col.is_finite().all() and ((col >= lo) & (col <= hi)).all()
