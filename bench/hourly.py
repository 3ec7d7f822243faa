"""Benchmark of the hourly aggregation against the seed's ways, PostgreSQL -> PostgreSQL.

    python bench/hourly.py            # everything: data (cached), a Prefect server, the table
    python bench/hourly.py one WAY SIZE   # one measured run in this process (used internally)

Data: 200 locations every 10 s with realistic values and some NULLs, 1M and 10M rows (10M is
about 5.8 days), in their own source databases; the target is a separate database. For each
size, three repetitions of:
  A      the seed's SQL (TO_CHAR ymd/hh, MAX/AVG, GROUP BY) in the source, the result upserted
  B      the seed's hook pattern: per hour, fetch the rows, aggregate in Python, executemany upsert
  flow   temperature_backfill over the whole range, as a Prefect flow run (Prefect included)
each in a fresh process (so peak RSS is its own), the target emptied before each run. Ratios to A
are taken within each repetition, then the median. After each repetition the three tables are
compared (same keys, maxima exact, averages within their rounding): a disagreement prints FAIL and
the bench exits 1. Then temperature_etl for one hour (with its
3-hour look-back): its data path alone and the whole flow run on the running server.
"""

from __future__ import annotations

import asyncio
import json
import os
import statistics
import subprocess
import sys
import time
from datetime import datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import PG, create_databases, import_startup_modules, init_block, peak_rss_mb, start_server  # noqa: E402

LOCATIONS = 200
START = datetime(2024, 3, 1)
SIZES = {"1M": 1_000_000, "10M": 10_000_000}
REPEATS = int(os.environ.get("MONTRG_BENCH_REPEATS", "3"))
TARGET = "montrg_bench_hq"


def source_db(size: str) -> str:
    return f"montrg_bench_src_{size.lower()}"


def block(db: str) -> str:
    return db.replace("_", "-")


def span(size: str) -> tuple[datetime, datetime]:
    steps = SIZES[size] // LOCATIONS
    return START, START + timedelta(seconds=10 * steps)


# ------------------------------------------------------------------ set-up (run once, cached)


async def ensure_data() -> None:
    from sqlalchemy import text

    from blocks import load_database
    from flows.core import simulate

    databases = [*(source_db(s) for s in SIZES), TARGET]
    await create_databases(databases, fresh=False)  # the generated data is kept between runs
    for db in databases:
        await (await init_block(block(db), db)).dispose()
    for size, rows in SIZES.items():
        d = await load_database(block(source_db(size)))
        async with d.engine.connect() as conn:
            count = (await conn.execute(text("SELECT count(*) FROM flet_montrg.temperature_raw"))).scalar_one()
        if count != rows:
            print(f"generating {rows:,} raw rows ({size}) ...", flush=True)
            started = time.perf_counter()
            lo, hi = span(size)
            async with d.engine.begin() as conn:
                await conn.execute(text("TRUNCATE flet_montrg.temperature_raw"))
            day = lo
            while day < hi:
                chunk = simulate.readings(LOCATIONS, day, min(day + timedelta(days=1), hi), null_share=0.01, seed=day.toordinal())
                async with d.engine.begin() as conn:
                    pg = (await conn.get_raw_connection()).driver_connection
                    await pg.copy_records_to_table("temperature_raw", schema_name="flet_montrg", records=chunk.iter_rows(), columns=chunk.columns)
                day += timedelta(days=1)
            async with d.engine.connect() as conn:  # as a table that has been around: vacuumed, analysed
                await conn.execution_options(isolation_level="AUTOCOMMIT")
                await conn.execute(text("VACUUM (FREEZE, ANALYZE) flet_montrg.temperature_raw"))
            print(f"  done in {time.perf_counter() - started:.0f} s", flush=True)
        await d.dispose()


# ------------------------------------------------------------------ the ways, one run each


async def way_a(size: str) -> int:
    """The seed's SQL in the source; its result upserted into the target."""
    import asyncpg

    lo, hi = span(size)
    src = await asyncpg.connect(f"{PG}/{source_db(size)}")
    rows = await src.fetch(
        "SELECT loc_id, TO_CHAR(capture_dt, 'YYYYMMDD') AS ymd, TO_CHAR(capture_dt, 'HH24') AS hh, "
        "MAX(temperature), AVG(temperature), MAX(humidity), AVG(humidity), MAX(pcv_temperature), AVG(pcv_temperature) "
        "FROM flet_montrg.temperature_raw WHERE capture_dt >= $1 AND capture_dt < $2 "
        "GROUP BY loc_id, TO_CHAR(capture_dt, 'YYYYMMDD'), TO_CHAR(capture_dt, 'HH24')", lo, hi,
    )
    await src.close()
    await upsert_contract_rows([tuple(r) for r in rows])
    return len(rows)


async def way_b(size: str) -> int:
    """The seed's hook pattern: per hour, fetch rows, aggregate in Python, executemany upsert."""
    import asyncpg

    lo, hi = span(size)
    src = await asyncpg.connect(f"{PG}/{source_db(size)}")
    written = 0
    hour = lo
    while hour < hi:
        rows = await src.fetch(
            "SELECT loc_id, temperature, humidity, pcv_temperature FROM flet_montrg.temperature_raw "
            "WHERE capture_dt >= $1 AND capture_dt < $2", hour, hour + timedelta(hours=1),
        )
        groups: dict[str, list[list[float]]] = {}
        for loc, *vals in rows:
            lists = groups.setdefault(loc, [[], [], []])
            for i, v in enumerate(vals):
                if v is not None:
                    lists[i].append(v)
        out = []
        for loc, lists in groups.items():
            stats = []
            for values in lists:
                stats += [max(values), sum(values) / len(values)] if values else [None, None]
            out.append((loc, hour.strftime("%Y%m%d"), hour.strftime("%H"), *stats))
        await upsert_contract_rows(out)
        written += len(out)
        hour += timedelta(hours=1)
    await src.close()
    return written


async def upsert_contract_rows(rows: list[tuple]) -> None:
    import asyncpg

    tgt = await asyncpg.connect(f"{PG}/{TARGET}")
    await tgt.executemany(
        "INSERT INTO flet_montrg.temperature (loc_id, ymd, hh, temperature_max, temperature_avg, humidity_max, "
        "humidity_avg, pcv_temperature_max, pcv_temperature_avg, sample_count) "
        "VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, 0) ON CONFLICT (loc_id, ymd, hh) DO UPDATE SET "
        "temperature_max = EXCLUDED.temperature_max, temperature_avg = EXCLUDED.temperature_avg, "
        "humidity_max = EXCLUDED.humidity_max, humidity_avg = EXCLUDED.humidity_avg, "
        "pcv_temperature_max = EXCLUDED.pcv_temperature_max, pcv_temperature_avg = EXCLUDED.pcv_temperature_avg",
        [tuple(float(v) if v is not None and not isinstance(v, str) else v for v in r) for r in rows],
    )
    await tgt.close()


async def way_flow(size: str) -> int:
    from flows import temperature_backfill

    lo, hi = span(size)
    report = await temperature_backfill(
        start=lo.isoformat(), end=hi.isoformat(), source_block=block(source_db(size)), target_block=block(TARGET)
    )
    return int(report.totals["location_hours"])


async def one(way: str, size: str) -> None:
    """One measured run in this process; prints JSON (seconds, groups written, peak RSS)."""
    import asyncpg

    tgt = await asyncpg.connect(f"{PG}/{TARGET}")
    await tgt.execute("TRUNCATE flet_montrg.temperature")
    await tgt.close()
    fn = {"A": way_a, "B": way_b, "flow": way_flow}[way]
    if way == "flow":  # importing is start-up, not the backfill (Prefect alone ~2 s here)
        import_startup_modules()
    started = time.perf_counter()
    groups = await fn(size)
    seconds = time.perf_counter() - started
    print(json.dumps({"seconds": seconds, "groups": groups, "rss_mb": peak_rss_mb()}))



# ------------------------------------------------------------------ temperature_etl, one hour


async def hourly_job() -> list[tuple[str, float]]:
    from zoneinfo import ZoneInfo

    from blocks import load_database
    from flows import temperature_etl
    from flows.core import aggregate
    from flows.core.io import sql
    from flows.core.settings import plant_now
    from flows.core.windows import etl_window

    hour = START + timedelta(days=3, hours=14)
    window = etl_window(hour, hour, 3, ZoneInfo("Asia/Seoul"))
    src, tgt = await load_database(block(source_db("10M"))), await load_database(block(TARGET))
    path, flow = [], []
    for _ in range(REPEATS):
        started = time.perf_counter()
        partial = await sql.read_partial_hourly(src, window)
        hourly = aggregate.finish_partial(partial)
        await sql.upsert_hourly(tgt, hourly, window, plant_now())
        stored = await sql.read_hourly(tgt, window)
        assert stored.height >= hourly.height
        path.append(time.perf_counter() - started)
        started = time.perf_counter()
        await temperature_etl(hour=hour, source_block=block(source_db("10M")), target_block=block(TARGET))
        flow.append(time.perf_counter() - started)
    await src.dispose()
    await tgt.dispose()
    rows = int(partial["sample_count"].sum())
    return [(f"data path ({rows:,} raw rows, {window.hours} hours)", statistics.median(path)),
            ("whole flow run, running server", statistics.median(flow))]


# ------------------------------------------------------------------ driver


VALUE_COLUMNS = [f"{m}_{s}" for m in ("temperature", "humidity", "pcv_temperature") for s in ("max", "avg")]


async def written() -> dict[tuple[str, str, str], tuple]:
    """What the last run left in the target: per (loc_id, ymd, hh), the seed's max/avg columns."""
    import asyncpg

    tgt = await asyncpg.connect(f"{PG}/{TARGET}")
    rows = await tgt.fetch(f"SELECT loc_id, ymd, hh, {', '.join(VALUE_COLUMNS)} FROM flet_montrg.temperature")
    await tgt.close()
    return {tuple(r[:3]): tuple(None if v is None else float(v) for v in r[3:]) for r in rows}


def disagreements(tables: dict[str, dict]) -> list[str]:
    """Where the contenders' tables differ: keys, maxima exactly, averages beyond their 4-decimal rounding."""
    out = []
    (ref_way, ref), *others = tables.items()
    for way, table in others:
        if table.keys() != ref.keys():
            out.append(f"{way} and {ref_way} wrote different location-hours ({len(table)} against {len(ref)})")
            continue
        for key, values in ref.items():
            for column, a, b in zip(VALUE_COLUMNS, values, table[key]):
                tolerance = 5.01e-5 if column.endswith("_avg") else 0.0
                if (a is None) != (b is None) or (a is not None and abs(a - b) > tolerance):
                    out.append(f"{way} {key} {column}: {b} against {ref_way}'s {a}")
    return out


def measured(way: str, size: str, env: dict[str, str]) -> dict:
    done = subprocess.run([sys.executable, __file__, "one", way, size], env=env, capture_output=True, text=True, cwd=ROOT)
    if done.returncode != 0:
        raise RuntimeError(f"{way} {size} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    env = {**os.environ, "PREFECT_SERVER_ANALYTICS_ENABLED": "false", "PREFECT_LOGGING_LEVEL": "WARNING"}
    server = start_server(env)
    os.environ.update(env)
    failed = False
    try:
        asyncio.run(ensure_data())
        for size, rows in SIZES.items():
            results: dict[str, list[dict]] = {"A": [], "B": [], "flow": []}
            ratios: dict[tuple[str, str], list[float]] = {}  # (way, reference) -> per repetition
            for rep in range(REPEATS):
                tables = {}
                for way in ("A", "B", "flow"):
                    results[way].append(measured(way, size, env))
                    print(f"  {size} rep {rep + 1} {way}: {results[way][-1]['seconds']:.2f} s", flush=True)
                    tables[way] = asyncio.run(written())  # after the measured process ended: not timed
                wrong = disagreements(tables)
                agreed = (f"  {size} rep {rep + 1}: A, B and the flow wrote the same {len(tables['A']):,} location-hours "
                          "(max exact, avg within 5e-5)")
                print(f"  FAIL: {size} rep {rep + 1}: " + "; ".join(wrong[:5]) if wrong else agreed, flush=True)
                failed |= bool(wrong)
                for way in results:
                    for reference in ("A", "B"):
                        ratio = results[way][-1]["seconds"] / results[reference][-1]["seconds"]
                        ratios.setdefault((way, reference), []).append(ratio)
            print(f"\nbackfill of {rows:,} raw rows ({LOCATIONS} locations at 10 s), PostgreSQL -> PostgreSQL, median of {REPEATS}")
            print(f"{'way':<46}{'s':>8}{'rows/s':>12}{'peak RSS MB':>13}{'x A':>7}{'x B':>7}")
            names = {"A": "A: the seed's SQL, result upserted", "B": "B: the seed's hook pattern (per hour)",
                     "flow": "temperature_backfill flow (pushdown)"}
            for way, runs in results.items():
                s = statistics.median(r["seconds"] for r in runs)
                rss = max(r["rss_mb"] for r in runs)
                x_a, x_b = (statistics.median(ratios[(way, ref)]) for ref in ("A", "B"))
                print(f"{names[way]:<46}{s:>8.2f}{rows / s:>12,.0f}{rss:>13.0f}{x_a:>7.2f}{x_b:>7.2f}")
            flow_vs_a = ", ".join(f"{r:.2f}" for r in ratios[("flow", "A")])
            print(f"flow / A per repetition: {flow_vs_a}")
            print()
        print(f"temperature_etl for one hour (200 locations, look-back 3 h), median of {REPEATS}")
        for label, seconds in asyncio.run(hourly_job()):
            print(f"  {label:<52}{seconds:>8.3f} s")
    finally:
        if server is not None:
            server.terminate()
            server.wait(30)
    if failed:
        sys.exit("FAIL: the contenders disagree (see above)")


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "one":
        asyncio.run(one(sys.argv[2], sys.argv[3]))
    elif len(sys.argv) == 1:
        main()
    else:
        sys.exit(__doc__)
