"""`montrg alarms`: list, acknowledge and mute the alarm episodes kept in the HQ database.

    montrg alarms list [--open] [--location L] [--limit N]
    montrg alarms ack ID --by NAME [--note TEXT]
    montrg alarms mute LOCATION --until TIME --reason TEXT [--from TIME] [--by NAME]
    montrg alarms unmute LOCATION

TIME is plant local time ('2026-12-06 08:00', or an ISO datetime). Acknowledging and muting are
stored in the database (what the hourly runs and the plant-health artifact read) and announced as
the Prefect events montrg.alarm.acknowledged, montrg.alarm.muted and montrg.alarm.unmuted about
`montrg.location.<loc_id>`, when a Prefect API is configured.
"""

from __future__ import annotations

import argparse
import asyncio
from datetime import datetime

from flows.settings import DEFAULT_TARGET_BLOCK, plant_now


def plant_time(text: str) -> datetime:
    """A plant local time from the command line; an error names the value."""
    try:
        value = datetime.fromisoformat(text.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a time: expected e.g. '2026-12-06 08:00' (plant local)") from None
    if value.tzinfo is not None:
        raise argparse.ArgumentTypeError(f"{text!r}: give plant local time without a UTC offset")
    return value


def add_arguments(sub: argparse._SubParsersAction) -> None:
    alarms = sub.add_parser("alarms", help="alarm episodes: list, acknowledge, mute").add_subparsers(dest="alarms_command", required=True)

    def with_block(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
        p.add_argument("--block", default=DEFAULT_TARGET_BLOCK, help=f"the HQ database block (default {DEFAULT_TARGET_BLOCK})")
        return p

    listing = with_block(alarms.add_parser("list", help="alarms, open ones first"))
    listing.add_argument("--open", action="store_true", help="only open and acknowledged alarms")
    listing.add_argument("--location", help="only this location")
    listing.add_argument("--limit", type=int, default=50, help="at most this many (default 50)")
    listing.set_defaults(func=_list)

    ack = with_block(alarms.add_parser("ack", help="acknowledge an alarm: seen, someone is on it"))
    ack.add_argument("id", type=int, help="the alarm's id (montrg alarms list)")
    ack.add_argument("--by", required=True, help="who takes it")
    ack.add_argument("--note", help="what is being done")
    ack.set_defaults(func=_ack)

    mute = with_block(alarms.add_parser("mute", help="planned maintenance: no alarm for a location until a time"))
    mute.add_argument("location", help="the location's loc_id")
    mute.add_argument("--until", required=True, type=plant_time, help="plant local time when alarms resume")
    mute.add_argument("--reason", required=True, help="why (shown with the mute)")
    mute.add_argument("--from", dest="starts", type=plant_time, help="plant local start (default now)")
    mute.add_argument("--by", help="who mutes it")
    mute.set_defaults(func=_mute)

    unmute = with_block(alarms.add_parser("unmute", help="end a location's mutes now"))
    unmute.add_argument("location")
    unmute.set_defaults(func=_unmute)


def _emit(event: str, loc_id: str, payload: dict[str, object]) -> None:
    import os

    if not os.environ.get("PREFECT_API_URL"):
        return
    from prefect.events import emit_event

    resource = {"prefect.resource.id": f"montrg.location.{loc_id}", "prefect.resource.name": loc_id}
    emit_event(event=event, resource=resource, payload={k: v.isoformat() if isinstance(v, datetime) else v for k, v in payload.items()})


def _run(block: str, work):  # noqa: ANN001, ANN202 - a coroutine function of the database
    from blocks import open_database

    async def run():  # noqa: ANN202
        async with open_database(block) as db:
            return await work(db)

    return asyncio.run(run())


def _list(args: argparse.Namespace) -> int:
    from flows import store

    found = _run(args.block, lambda db: store.read_episodes(db, live_only=args.open, loc_id=args.location, limit=args.limit))
    if found.is_empty():
        print("no alarms" + (" open" if args.open else "") + (f" at {args.location}" if args.location else ""))
        return 0
    print(f"{'id':>6}  {'state':<12} {'location':<16} {'measure':<16} {'peak':<7} {'first bad hour':<16}  {'last bad hour':<16}  note")
    for r in found.iter_rows(named=True):
        note = r["close_reason"] if r["state"] == "closed" else (
            f"by {r['acked_by']}" + (f": {r['ack_note']}" if r["ack_note"] else "") if r["state"] == "acknowledged" else "")
        print(f"{r['episode_id']:>6}  {r['state']:<12} {r['loc_id']:<16} {r['measure']:<16} {r['peak_level']:<7} "
              f"{r['first_hour']:%Y-%m-%d %H:00}  {r['last_hour']:%Y-%m-%d %H:00}  {note or ''}")
    return 0


def _ack(args: argparse.Namespace) -> int:
    from flows import store

    row = _run(args.block, lambda db: store.acknowledge(db, args.id, args.by, args.note, plant_now()))
    _emit("montrg.alarm.acknowledged", row["loc_id"], {k: row[k] for k in ("episode_id", "loc_id", "measure", "peak_level", "acked_by", "ack_note", "acked_dt")})
    print(f"alarm {args.id} ({row['loc_id']} {row['measure']}, {row['peak_level']}) acknowledged by {args.by}")
    return 0


def _mute(args: argparse.Namespace) -> int:
    from flows import store

    now = plant_now()
    starts = args.starts or now
    if args.until <= starts:
        raise ValueError(f"--until {args.until:%Y-%m-%d %H:%M} is not after the mute's start {starts:%Y-%m-%d %H:%M}")
    mute_id, closed = _run(args.block, lambda db: store.mute(db, args.location, starts, args.until, args.reason, args.by, now))
    _emit("montrg.alarm.muted", args.location, {"mute_id": mute_id, "loc_id": args.location, "starts_dt": starts,
                                                 "until_dt": args.until, "reason": args.reason, "muted_by": args.by, "closed": closed})
    print(f"{args.location} muted from {starts:%Y-%m-%d %H:%M} until {args.until:%Y-%m-%d %H:%M} (plant time): {args.reason}"
          + (f"; closed alarm(s) {', '.join(map(str, closed))}" if closed else ""))
    return 0


def _unmute(args: argparse.Namespace) -> int:
    from flows import store

    ended = _run(args.block, lambda db: store.unmute(db, args.location, plant_now()))
    if ended:
        _emit("montrg.alarm.unmuted", args.location, {"loc_id": args.location, "mutes_ended": ended})
    print(f"{args.location}: {ended} mute(s) ended" if ended else f"{args.location} was not muted")
    return 0
