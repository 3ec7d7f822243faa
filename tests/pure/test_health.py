"""Plant health, the pure part: coverage and the health table."""

from __future__ import annotations

from datetime import datetime

import polars as pl

from flows.domain import health

H = datetime(2024, 3, 1, 10)


def alerts(rows: list[tuple[str, str, str]], hour: datetime = H) -> pl.DataFrame:
    """(loc_id, measure, level) rows of one hour."""
    return pl.DataFrame(
        [(loc, hour, m, lvl) for loc, m, lvl in rows],
        schema={"loc_id": pl.String, "alert_time": pl.Datetime("us"), "measure": pl.String, "level": pl.String},
        orient="row",
    )


def test_coverage_counts_readings_against_the_polling_interval():
    expected = health.expected_readings(
        pl.DataFrame({"loc_id": ["A", "B", "OFF"], "is_active": [True, True, False], "poll_interval_s": [60.0, None, 60.0]}), 10.0
    )
    hourly = pl.DataFrame({"loc_id": ["A", "B", "X"], "hour": [H] * 3, "sample_count": [30, 360, 5]})
    assert health.with_coverage(hourly, expected, 10.0)["coverage"].to_list() == [0.5, 1.0, round(5 / 360, 4)]
    found = health.coverage_alerts(hourly.filter(pl.col("loc_id") != "B"), expected, [H], 0.8)
    assert found.select("loc_id", "level", "measured_value").rows() == [("A", "orange", 0.5), ("B", "orange", 0.0), ("B", "red", 0.0)]
    assert "B sent no readings at 2024-03-01 10:00 (360 expected)" in found["message"].to_list()


def test_the_health_table_puts_the_worst_location_first():
    expected = health.expected_readings(
        pl.DataFrame({"loc_id": ["OK", "LOW", "HOT"], "is_active": [True] * 3, "poll_interval_s": [None] * 3}), 10.0
    )
    hourly = pl.DataFrame({"loc_id": ["OK", "LOW", "HOT"], "hour": [H] * 3, "coverage": [1.0, 0.4, 1.0]})
    open_alerts = alerts([("HOT", "temperature", "yellow"), ("HOT", "temperature", "red"), ("LOW", "coverage", "orange")])
    rows, more = health.health_table(hourly, expected, open_alerts, [H], limit=2)
    assert [(r["location"], r["worst open alert"], r["10:00"]) for r in rows] == [("HOT", "red", "100%"), ("LOW", "orange", "40%")]
    assert more == 1
