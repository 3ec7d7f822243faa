"""A backfill's plan: the chunk limit and its proposal, the chosen chunk size, the skipped chunks,
the timeout that follows the plan."""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

import pytest

from flows.domain.backfill import MAX_CHUNKS, backfill_plan, choose_chunk_hours, plan_backfill
from flows.domain.windows import Window

NOW = datetime(2026, 12, 4, 15, 30)
SEOUL = ZoneInfo("Asia/Seoul")


def test_26_years_in_hourly_chunks_is_refused_with_a_chunk_size_that_fits():
    with pytest.raises(ValueError) as refused:
        backfill_plan("2000-01-01", "2026-12-01", 1, 4, 180, NOW, SEOUL, datetime(2000, 1, 1))
    message = str(refused.value)
    assert "chunk_hours=1 cuts [2000-01-01 00:00, 2026-12-02 00:00) (235,968 hours) into 235,968 chunks" in message
    assert f"more than the limit of {MAX_CHUNKS:,}; give chunk_hours=24 (9,832 chunks) or more" in message
    window, pieces = backfill_plan("2000-01-01", "2026-12-01", 24, 4, 180, NOW, SEOUL, datetime(2000, 1, 1))
    assert len(pieces) == 9_832 and pieces[0].start == window.start and pieces[-1].end == window.end


def test_without_a_chunk_size_a_day_is_taken_or_less_for_dense_sources_and_always_within_the_limit():
    assert choose_chunk_hours(24 * 30, None) == 24
    assert choose_chunk_hours(24 * 30, 24 * 30 * 20_000) == 24  # 480k readings a day
    assert choose_chunk_hours(24, 24 * 2_000_000) == 2  # 2M readings an hour: 5M a chunk
    assert choose_chunk_hours(24, 24 * 9_000_000) == 1
    assert choose_chunk_hours(235_968, None) == 24  # 26 years: a day still fits
    assert choose_chunk_hours(24 * 365 * 126, None) == 120  # 126 years: whole days that fit (5)
    window, pieces = backfill_plan("1900-01-01", "2026-12-01", None, 4, 180, NOW, SEOUL, datetime(1900, 1, 1))
    assert window.hours > 24 * MAX_CHUNKS
    assert len(pieces) <= MAX_CHUNKS


def test_chunks_before_the_sources_first_reading_are_skipped_and_the_timeout_follows_the_plan():
    window = Window(datetime(2024, 1, 1), datetime(2024, 1, 11))
    empty = plan_backfill(window, None, None, 0, None)
    assert (empty.chunks, len(empty.pieces), empty.skipped) == (10, 0, 10)  # an empty source: nothing to run
    assert empty.timeout_seconds == 600
    half = plan_backfill(window, 24, datetime(2024, 1, 6, 5), 1_000_000, 500_000.0)
    assert [p.start.day for p in half.pieces] == [6, 7, 8, 9, 10] and half.skipped == 5
    assert half.timeout_seconds == 600 + 30 * 5 + 60
    assert half.estimate_seconds == 2.0
    line = half.describe()
    assert line.startswith("plan: [2024-01-01 00:00, 2024-01-11 00:00) (plant time), 240 hours in 10 chunks of 24 h: 5 to run")
    assert "about 1,000,000 readings in the source, about 2 s at the 500,000 readings/s of recent runs" in line
