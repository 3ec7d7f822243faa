"""The plans the domain hands to the store: what makes the stored hours and the recorded alerts
equal what was computed. Pure: frames in, plans out (the store only carries them out)."""

from __future__ import annotations

from datetime import datetime, timedelta

import polars as pl

from flows.domain import aggregate, health
from flows.domain.alerts import ALERT_KEYS

H = datetime(2024, 3, 1, 10)


def hours(rows: list[tuple[str, int, float]]) -> pl.DataFrame:
    """Stored-shape hourly rows (loc_id, hour offset from H, temperature_max); the other values fixed."""
    values = {c: 1.0 for c in aggregate.STORED_COLUMNS if c not in aggregate.KEYS}
    frame = pl.DataFrame(
        [{"loc_id": loc, "hour": H + timedelta(hours=h), **values, "temperature_max": t} for loc, h, t in rows]
    )
    return frame.select(aggregate.STORED_COLUMNS).cast(aggregate.HOURLY_SCHEMA)  # type: ignore[arg-type]


def keys(frame: pl.DataFrame) -> list[tuple[str, datetime]]:
    return sorted(frame.select(aggregate.KEYS).rows())


def test_the_hourly_plan_writes_only_what_changed_and_prunes_only_judged_hours_that_are_not_spared():
    stored = hours([("A", 0, 20.0), ("A", 1, 21.0), ("B", 0, 5.0), ("B", 1, 5.0), ("C", 2, 7.0)])
    computed = hours([("A", 0, 20.0), ("A", 1, 22.5), ("D", 0, 9.0)])
    spare = pl.DataFrame({"loc_id": ["C"], "hour": [H + timedelta(hours=2)]})
    plan = aggregate.plan_hourly(computed, stored, H + timedelta(hours=1), spare)
    assert keys(plan.upserts) == [("A", H + timedelta(hours=1)), ("D", H)]  # the changed one and the new one
    assert (plan.inserted, plan.updated, plan.unchanged) == (1, 1, 1)
    assert keys(plan.deletes) == [("B", H + timedelta(hours=1))]  # B at H is before prune_from; C is spared
    assert aggregate.plan_hourly(computed, stored, None, spare.clear()).removed == 0  # nothing judged: nothing pruned
    again = aggregate.plan_hourly(computed, computed, H, spare.clear())
    assert again.upserts.is_empty() and again.unchanged == computed.height  # a rerun changes nothing


def test_the_hour_key_codec_round_trips_and_is_the_tables_format():
    frame = hours([("A", 0, 1.0), ("A", 14, 2.0)])
    encoded = aggregate.encode_key(frame)
    assert encoded.select("ymd", "hh").rows() == [("20240301", "10"), ("20240302", "00")]
    assert aggregate.key_of(H) == ("20240301", "10")
    assert aggregate.decode_key(encoded).equals(frame)


def recorded(rows: list[tuple[int, str, str, str, str]]) -> pl.DataFrame:
    """(alert_id, loc_id, measure, level, status) of hour H."""
    return pl.DataFrame(
        [(i, loc, H, m, lvl, st, 35.0, None, 30.0, "old") for i, loc, m, lvl, st in rows],
        schema={"alert_id": pl.Int64, "loc_id": pl.String, "alert_time": pl.Datetime("us"), "measure": pl.String,
                "level": pl.String, "status": pl.String, "measured_value": pl.Float64, "threshold_min": pl.Float64,
                "threshold_max": pl.Float64, "message": pl.String},
        orient="row",
    )


def breaches(rows: list[tuple[str, str, str]]) -> pl.DataFrame:
    return pl.DataFrame(
        [(loc, H, m, lvl, 40.0, None, 30.0, "msg") for loc, m, lvl in rows],
        schema={"loc_id": pl.String, "alert_time": pl.Datetime("us"), "measure": pl.String, "level": pl.String,
                "measured_value": pl.Float64, "threshold_min": pl.Float64, "threshold_max": pl.Float64, "message": pl.String},
        orient="row",
    )


def test_the_alert_plan_opens_reopens_resolves_and_leaves_spared_hours_alone():
    found = breaches([("A", "temperature", "yellow"), ("A", "temperature", "red"), ("B", "humidity", "yellow"),
                      ("S", "temperature", "red")])
    before = recorded([(1, "A", "temperature", "yellow", "open"), (2, "B", "humidity", "yellow", "resolved"),
                       (3, "C", "temperature", "red", "open"), (4, "S", "temperature", "yellow", "open")])
    spare = pl.DataFrame({"loc_id": ["S"], "hour": [H]})
    plan = health.plan_alerts(found, before, spare)
    assert plan.new.select(ALERT_KEYS).rows() == [("A", H, "temperature", "red")]
    assert sorted(plan.known["loc_id"].to_list()) == ["A", "B"]
    assert plan.reopened["loc_id"].to_list() == ["B"]
    assert plan.resolve == [3]  # C no longer breaches; S is spared, so its yellow stays open
    # what is open once the plan is carried out: the breaches found, and S's spared yellow as recorded
    assert sorted(plan.current.select("loc_id", "level", "message").rows()) == [
        ("A", "red", "msg"), ("A", "yellow", "msg"), ("B", "yellow", "msg"), ("S", "yellow", "old"),
    ]
