"""`montrg report --hours 24 --out DIR`: the plant-health pictures and an HTML page, for people
without access to the Prefect UI.

Reads the HQ database (`--block`, default pg-fdw-v2-hq) and writes into DIR:
  coverage-grid.png / .csv   active locations x the last HOURS hours, colour by coverage, worst first (<= 50)
  limits.png / .csv          the worst 6 locations' hourly avg/max temperature over 2 x HOURS hours
                             against the plant's yellow/orange/red limits
  index.html                 both pictures, the open alarms and the muted locations
The CSV files are the data each picture was drawn from.
"""

from __future__ import annotations

import argparse
import asyncio
import html
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

from flows.settings import DEFAULT_TARGET_BLOCK


def add_arguments(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("report", help="the plant-health pictures and an HTML page, into a folder")
    p.add_argument("--hours", type=int, default=24, help="hours of the coverage grid (the charts show twice as many; default 24)")
    p.add_argument("--out", required=True, help="the folder to write (created if missing)")
    p.add_argument("--block", default=DEFAULT_TARGET_BLOCK, help=f"the HQ database block (default {DEFAULT_TARGET_BLOCK})")
    p.set_defaults(func=_report)


@dataclass
class Written:
    folder: Path
    locations: int
    charted: list[str]
    alarms: int


async def write_report(target, hours: int, out: Path) -> Written:  # noqa: ANN001 - a flows.store.Database
    from flows import store
    from flows.domain import health, pictures
    from flows.domain.windows import Window
    from flows.settings import plant_now, poll_interval_seconds

    if not 1 <= hours <= 24 * 31:
        raise ValueError(f"--hours {hours} is out of range: 1 to {24 * 31}")
    end = plant_now().replace(minute=0, second=0, microsecond=0)
    grid_hours = health.hours_of(end - timedelta(hours=hours), end)
    hourly = await store.read_hourly(target, Window(end - timedelta(hours=2 * hours), end))
    expected = health.expected_readings(await store.read_locations(target), poll_interval_seconds())
    live = await store.read_episodes(target, live_only=True)
    mutes = await store.read_mutes(target, plant_now())
    grid = pictures.coverage_grid(hourly, expected, grid_hours)
    charted = pictures.worst_locations(grid, live)
    chart_hours = health.hours_of(end - timedelta(hours=2 * hours), end)
    series, limits = pictures.limit_series(hourly, charted, await store.read_thresholds(target), chart_hours)
    out.mkdir(parents=True, exist_ok=True)
    grid.write_csv(out / "coverage-grid.csv")
    series.write_csv(out / "limits.csv")
    (out / "coverage-grid.png").write_bytes(pictures.draw_coverage_grid(grid))
    (out / "limits.png").write_bytes(pictures.draw_limit_charts(series, limits, charted))
    alarms = "\n".join(
        f"<tr><td>{r['episode_id']}</td><td>{html.escape(r['loc_id'])}</td><td>{r['measure']}</td><td>{r['peak_level']}</td>"
        f"<td>{r['first_hour']:%Y-%m-%d %H:00}</td><td>{r['last_hour']:%Y-%m-%d %H:00}</td>"
        f"<td>{html.escape(r['state'] + (' by ' + r['acked_by'] if r['acked_by'] else ''))}</td></tr>"
        for r in live.iter_rows(named=True)
    )
    muted = "".join(f"<li>{html.escape(r['loc_id'])} until {r['until_dt']:%Y-%m-%d %H:%M}: {html.escape(r['reason'])}</li>"
                    for r in mutes.iter_rows(named=True))
    (out / "index.html").write_text(f"""<!doctype html>
<html><head><meta charset="utf-8"><title>Plant health {end:%Y-%m-%d %H:00}</title>
<style>body{{font-family:sans-serif;margin:2em}} table{{border-collapse:collapse}} td,th{{border:1px solid #ccc;padding:2px 8px}}</style>
</head><body>
<h1>Plant health, the {hours} hours before {end:%Y-%m-%d %H:00} (plant time)</h1>
<h2>Open alarms: {live.height}</h2>
<table><tr><th>alarm</th><th>location</th><th>measure</th><th>peak</th><th>since</th><th>last bad hour</th><th>state</th></tr>
{alarms}</table>
{f"<h2>Muted</h2><ul>{muted}</ul>" if muted else ""}
<h2>Coverage</h2><img id="coverage-grid" src="coverage-grid.png" alt="coverage grid">
<h2>Temperature against the limits, worst {len(charted)} locations</h2><img id="limits" src="limits.png" alt="limits charts">
</body></html>
""", encoding="utf-8")
    return Written(out, grid["loc_id"].n_unique(), charted, live.height)


def _report(args: argparse.Namespace) -> int:
    from blocks import open_database

    async def run() -> Written:
        async with open_database(args.block) as db:
            return await write_report(db, args.hours, Path(args.out))

    done = asyncio.run(run())
    print(f"wrote {done.folder / 'index.html'}: coverage of {done.locations} locations, charts of {', '.join(done.charted) or 'none'}, "
          f"{done.alarms} open alarms")
    return 0
