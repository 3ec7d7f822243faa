"""Alarm episodes on the real databases and server: a sensor silent for 30 hours is one alarm,
announced once, closed when it speaks again; `montrg alarms ack` and `mute` persist across runs
and suppress exactly what they promise."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import polars as pl
import pytest
from sqlalchemy import insert

from flows import store, temperature_backfill
from flows.ops.cli import main
from flows.store.schema import thresholds
from tests.helpers import query, unique
from tests.test_alerts import breach_events, set_locations

T0 = datetime(2024, 3, 1, 0)


@pytest.fixture(params=["postgresql->postgresql", "postgresql->mariadb"])
async def alarm_pair(request, db_pair, monkeypatch):
    monkeypatch.setenv("MONTRG_NOTIFY_HOURS", "1000000")  # the test hours lie in 2024: announce them
    return await db_pair(request.param)


def speaks(loc: str, hours: range) -> pl.DataFrame:
    """A reading every 5 minutes of the given hours after T0 (12 expected per hour at 300 s)."""
    rows = [(loc, T0 + timedelta(hours=h, minutes=m), 20.0, 50.0, 22.0) for h in hours for m in range(0, 60, 5)]
    return pl.DataFrame(rows, schema=["loc_id", "capture_dt", "temperature", "humidity", "pcv_temperature"], orient="row")


async def montrg(argv: list[str]) -> int:
    """The command line, as a person runs it (its own event loop, in a thread beside the test's)."""
    return await asyncio.to_thread(main, argv)


async def episodes_of(target, loc: str) -> list[tuple]:
    df = await query(target, f"SELECT episode_id, measure, first_hour, last_hour, peak_level, state, close_reason, acked_by "
                             f"FROM {target.table('alarm_episodes')} WHERE loc_id = :l ORDER BY first_hour", l=loc)
    return df.rows()


async def backfill(source, target, hours: int, chunk_hours: int = 6):
    return await temperature_backfill(start=T0, end=T0 + timedelta(hours=hours), chunk_hours=chunk_hours,
                                      source_block=source.block, target_block=target.block)


async def test_a_sensor_silent_for_30_hours_is_one_alarm_announced_once_and_closes_when_it_speaks(alarm_pair):
    source, target = alarm_pair
    p = unique("SIL")
    await set_locations(target, [(f"{p}-OK", True, 300), (f"{p}-QUIET", True, 300)])
    await store.insert_raw(source.db, pl.concat([speaks(f"{p}-OK", range(36)), speaks(f"{p}-QUIET", [0, 1, *range(32, 36)])]))
    since = datetime.now(UTC)

    first = await backfill(source, target, 36)  # six chunks: the silence crosses five chunk boundaries
    again = await backfill(source, target, 36)

    gap = await query(target, f"SELECT COUNT(*) FROM {target.table('alerts')} WHERE loc_id = :l AND level = 'red'", l=f"{p}-QUIET")
    assert gap.item() == 30  # the hours stay recorded one by one
    [(episode_id, measure, first_hour, last_hour, peak, state, reason, _)] = await episodes_of(target, f"{p}-QUIET")
    assert (measure, first_hour, last_hour, peak, state, reason) == (
        "coverage", T0 + timedelta(hours=2), T0 + timedelta(hours=31), "red", "closed", "back to normal")
    assert await episodes_of(target, f"{p}-OK") == []
    assert (first.totals["alerts_notified"], again.totals["alerts_notified"]) == (1, 0)
    events = await breach_events(since, expect=1, prefix=f"montrg.location.{p}")
    assert [(e.resource.id, e.payload["level"], e.payload["episode_id"]) for e in events] == [
        (f"montrg.location.{p}-QUIET", "red", episode_id)]


async def test_ack_and_mute_persist_across_runs_and_suppress_what_they_promise(alarm_pair, capsys):
    source, target = alarm_pair
    loc = unique("MNT")
    await set_locations(target, [(loc, True, 300)])
    await store.insert_raw(source.db, speaks(loc, range(1)))  # then silent
    await backfill(source, target, 6)
    [(episode_id, *_)] = await episodes_of(target, loc)

    assert await montrg(["alarms", "ack", str(episode_id), "--by", "kim", "--note", "gateway reboot", "--block", target.block]) == 0
    rerun = await backfill(source, target, 8)  # still silent, longer: the same alarm, still acknowledged, no announcement
    assert rerun.totals["alerts_notified"] == 0
    assert [(e[0], e[3], e[5], e[7]) for e in await episodes_of(target, loc)] == [
        (episode_id, T0 + timedelta(hours=7), "acknowledged", "kim")]
    assert await montrg(["alarms", "list", "--open", "--location", loc, "--block", target.block]) == 0
    assert "acknowledged by kim\n" in (shown := capsys.readouterr().out) and shown.rstrip().endswith("by kim: gateway reboot")

    # planned maintenance of hours 8..11: the open alarm closes at once, the muted hours raise nothing
    assert await montrg(["alarms", "mute", loc, "--from", "2024-03-01 08:00", "--until", "2024-03-01 12:00",
                 "--reason", "sensor swap", "--block", target.block]) == 0
    muted = await backfill(source, target, 12)
    assert muted.totals["alerts_notified"] == 0
    assert [(e[0], e[5], e[6]) for e in await episodes_of(target, loc)] == [
        (episode_id, "closed", "muted until 2024-03-01 12:00: sensor swap")]
    recorded = await query(target, f"SELECT COUNT(*) FROM {target.table('alerts')} WHERE loc_id = :l AND level = 'red'", l=loc)
    assert recorded.item() == 11  # hours 1..11 are recorded, muted or not

    # the maintenance is over and the sensor is still silent: a new alarm, announced
    after = await backfill(source, target, 14)
    opened = await episodes_of(target, loc)
    assert [(e[2], e[5]) for e in opened[1:]] == [(T0 + timedelta(hours=12), "open")] and after.totals["alerts_notified"] == 1

    assert await montrg(["alarms", "mute", loc, "--until", "2999-01-01 00:00", "--reason", "line stopped", "--block", target.block]) == 0
    assert "closed alarm(s) " in capsys.readouterr().out
    assert (await episodes_of(target, loc))[1][5] == "closed"
    assert await montrg(["alarms", "unmute", loc, "--block", target.block]) == 0
    assert "1 mute(s) ended" in capsys.readouterr().out
    assert await montrg(["alarms", "ack", "999999", "--by", "kim", "--block", target.block]) == 2
    assert "alarm 999999 does not exist" in capsys.readouterr().err


async def test_a_breach_rising_yellow_to_red_is_one_alarm_announced_twice_that_closes(alarm_pair):
    source, target = alarm_pair
    loc = unique("HOT")
    async with target.db.engine.begin() as conn:
        await conn.execute(insert(thresholds), [
            {"threshold_id": n, "threshold_type": "temperature", "level": level, "min_value": -50.0, "max_value": hi, "loc_id": None, "is_active": True}
            for n, (level, hi) in enumerate([("yellow", 30.0), ("red", 35.0)], start=1)
        ])
    temps = [20.0, 32.0, 36.0, 33.0, 20.0, 20.0]  # normal, yellow, red, yellow (a fall), normal, normal
    await store.insert_raw(source.db, pl.DataFrame(
        [(loc, T0 + timedelta(hours=h, minutes=m), t, 50.0, 22.0) for h, t in enumerate(temps) for m in (0, 30)],
        schema=["loc_id", "capture_dt", "temperature", "humidity", "pcv_temperature"], orient="row"))
    since = datetime.now(UTC)
    done = await backfill(source, target, 6, chunk_hours=2)  # the rise crosses a chunk boundary
    assert done.totals["alerts_notified"] == 2
    [(episode_id, measure, first_hour, last_hour, peak, state, reason, _)] = [
        e for e in await episodes_of(target, loc) if e[1] == "temperature"]
    assert (first_hour, last_hour, peak, state, reason) == (T0 + timedelta(hours=1), T0 + timedelta(hours=3), "red", "closed", "back to normal")
    events = await breach_events(since, expect=2, prefix=f"montrg.location.{loc}")
    assert sorted((e.payload["level"], e.payload["replaces"], e.payload["episode_id"]) for e in events) == [
        ("red", "yellow", episode_id), ("yellow", None, episode_id)]


async def test_late_data_repairing_the_middle_of_a_silence_splits_nothing(alarm_pair):
    source, target = alarm_pair
    loc = unique("GAP")
    await set_locations(target, [(loc, True, 300)])
    await store.insert_raw(source.db, speaks(loc, range(1)))  # then silent for hours 1..11
    first = await backfill(source, target, 12)
    await store.insert_raw(source.db, speaks(loc, range(4, 7)))  # the gateway's buffer for 4..6 arrives late
    again = await backfill(source, target, 12)
    [(episode_id, _, first_hour, last_hour, _, state, _, _)] = await episodes_of(target, loc)
    assert (first_hour, last_hour, state) == (T0 + timedelta(hours=1), T0 + timedelta(hours=11), "open")
    assert (first.totals["alerts_notified"], again.totals["alerts_notified"]) == (1, 0)
