"""Range rules and the hourly window, in plant time (pure functions)."""

from __future__ import annotations

from datetime import UTC, date, datetime
from zoneinfo import ZoneInfo

import pytest

from flows.domain.windows import Window, chunks, etl_window, floor_hour, parse_range

SEOUL = ZoneInfo("Asia/Seoul")
NOW = datetime(2024, 3, 10, 14, 25)  # plant local


@pytest.mark.parametrize(
    "start,end,expected",
    [
        ("2024-01-01", "2024-01-31", (datetime(2024, 1, 1), datetime(2024, 2, 1))),  # end date inclusive
        (date(2024, 1, 1), date(2024, 1, 1), (datetime(2024, 1, 1), datetime(2024, 1, 2))),
        ("2024-01-01T05:00", "2024-01-01T07:00", (datetime(2024, 1, 1, 5), datetime(2024, 1, 1, 7))),
        ("2024-01-01 05:30", "2024-01-01T06:10:00", (datetime(2024, 1, 1, 5), datetime(2024, 1, 1, 7))),
        # aware datetimes are converted to plant time; naive and aware mixed in one run
        ("2024-01-01T00:00:00+00:00", datetime(2024, 1, 1, 12), (datetime(2024, 1, 1, 9), datetime(2024, 1, 1, 12))),
        (datetime(2024, 1, 1, tzinfo=UTC), "2024-01-01", (datetime(2024, 1, 1, 9), datetime(2024, 1, 2))),
        # reaching into the future: stops at the last full hour
        ("2024-03-10", "2024-03-31", (datetime(2024, 3, 10), datetime(2024, 3, 10, 14))),
    ],
)
def test_parse_range(start, end, expected):
    assert parse_range(start, end, NOW, SEOUL) == Window(*expected)


def test_start_after_end_names_both():
    with pytest.raises(ValueError, match="start=2024-01-02 is not before end=2024-01-01"):
        parse_range("2024-01-02", "2024-01-01", NOW, SEOUL)


def test_etl_window_uses_the_scheduled_time_in_plant_time():
    scheduled = datetime(2024, 3, 10, 1, 0, 3, tzinfo=UTC)  # 10:00:03 in Seoul
    assert etl_window(None, scheduled, 3, SEOUL) == Window(datetime(2024, 3, 10, 6), datetime(2024, 3, 10, 10))
    assert etl_window(datetime(2024, 3, 10, 7, 45), scheduled, 0, SEOUL) == Window(
        datetime(2024, 3, 10, 7), datetime(2024, 3, 10, 8)
    )


def test_chunks_tile_the_window():
    window = Window(datetime(2024, 1, 1, 5), datetime(2024, 1, 3))
    pieces = chunks(window, 24)
    assert [p.hours for p in pieces] == [24, 19]
    assert pieces[0].start == window.start and pieces[-1].end == window.end
    assert all(a.end == b.start for a, b in zip(pieces, pieces[1:]))


def test_a_utc_range_inside_the_repeated_dst_hour_is_that_plant_hour():
    berlin = ZoneInfo("Europe/Berlin")
    now = datetime(2024, 11, 1)
    # 00:00Z and 01:00Z are both 02:00 local on 2024-10-27 (CEST, then CET)
    window = parse_range("2024-10-27T00:00+00:00", "2024-10-27T01:00+00:00", now, berlin)
    assert window == Window(datetime(2024, 10, 27, 2), datetime(2024, 10, 27, 3))
    with pytest.raises(ValueError, match="is not before end"):  # a reversed range stays an error
        parse_range("2024-10-27T01:00+00:00", "2024-10-27T00:00+00:00", now, berlin)


def test_an_end_far_in_the_future_stops_at_the_last_full_hour():
    assert parse_range("2024-03-01", "9999-12-31", NOW, SEOUL) == Window(datetime(2024, 3, 1), floor_hour(NOW))
    assert parse_range("2024-03-01", "9999-12-31T23:30", NOW, SEOUL).end == floor_hour(NOW)
