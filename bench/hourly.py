"""Benchmark of the hourly aggregation against the seed's ways, PostgreSQL -> PostgreSQL.

    python bench/hourly.py            # everything: data (cached), a Prefect server, the tables
    python bench/hourly.py one WAY SIZE   # one measured run in this process (used internally)

Every figure is a fresh process timed from outside, from its start to its exit (interpreter start
and imports included: what a process worker's flow run pays), on a running Prefect server; the
time of the work inside that process (after its imports) is printed beside it. MONTRG_BENCH_SIZES
picks the backfill sizes (default 1M,10M; `make bench-scale` adds 100M).

Data: 200 locations every 10 s with realistic values and some NULLs, 1M and 10M rows (10M is
about 5.8 days), in their own source databases; the target is a separate database. For each
size, three repetitions of:
  A      the seed's SQL (TO_CHAR ymd/hh, MAX/AVG, GROUP BY) in the source, the result upserted
  B      the seed's hook pattern: per hour, fetch the rows, aggregate in Python, executemany upsert
  flow   temperature_backfill over the whole range, as a Prefect flow run (Prefect included)
each in a fresh process (so peak RSS is its own), the target emptied before each run (not timed).
Ratios to A are taken within each repetition on the whole-process times, then the median. After
each repetition the three tables are compared (same keys, maxima exact, averages within their
rounding): a disagreement prints FAIL and the bench exits 1. Then:
  - a flow run's fixed cost: a backfill of a range without readings, beside `import prefect,
    prefect_sqlalchemy` and `import flows` (each a fresh process);
  - temperature_etl for one hour (with its 3-hour look-back): first load of new hours, and a rerun;
  - the hourly job's cost as locations grow: one hour (no look-back) of 200, 2,000 and 20,000
    locations at 10 s.
"""

from __future__ import annotations

import asyncio
import io
import json
import os
import statistics
import sys
import time
from datetime import datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import PG, create_databases, init_block, json_child, peak_rss_mb, start_server, timed  # noqa: E402

LOCATIONS = 200
START = datetime(2024, 3, 1)
ALL_SIZES = {"1M": 1_000_000, "10M": 10_000_000, "100M": 100_000_000}
SIZES = {k: ALL_SIZES[k] for k in os.environ.get("MONTRG_BENCH_SIZES", "1M,10M").split(",")}
SCALE_LOCATIONS = (200, 2_000, 20_000)
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


SCALE_HOUR = datetime(2024, 3, 1, 14)


def scale_db(locations: int) -> str:
    return f"montrg_bench_loc_{locations}"


async def ensure_data() -> None:
    databases = [*(source_db(s) for s in SIZES), *(scale_db(n) for n in SCALE_LOCATIONS), TARGET]
    await create_databases(databases, fresh=False)  # the generated data is kept between runs
    for db in databases:
        await (await init_block(block(db), db)).dispose()
    for size, rows in SIZES.items():
        await fill(source_db(size), rows, LOCATIONS, *span(size))
    for n in SCALE_LOCATIONS:  # one hour of n locations, for the hourly job's scale
        await fill(scale_db(n), n * 360, n, SCALE_HOUR, SCALE_HOUR + timedelta(hours=1))


async def fill(database: str, rows: int, locations: int, lo: datetime, hi: datetime) -> None:
    """`database`'s temperature_raw holds exactly `rows` readings of `locations` at 10 s in [lo, hi).

    Generated a day at a time with NumPy (flows.ops.simulate.readings: a daily curve, noise, 1%
    NULLs; seeded, so every regeneration gives the same rows), in arrival order (time, then
    location), and streamed as binary COPY ... FREEZE (flows.store.pgcopy) into the table emptied in
    the same transaction: the next day is generated in a thread while PostgreSQL loads the last
    one; the rows arrive frozen (no VACUUM needed), and the keys are built once, after the load."""
    import asyncpg

    from flows.ops import simulate
    from flows.store import pgcopy
    from flows.store.schema import temperature_raw

    def day_bytes(day: datetime) -> memoryview:
        chunk = simulate.readings(locations, day, min(day + timedelta(days=1), hi), null_share=0.01, seed=day.toordinal())
        return pgcopy.encode(temperature_raw, chunk.sort("capture_dt", "loc_id"))

    conn = await asyncpg.connect(f"{PG}/{database}")
    try:
        if await conn.fetchval("SELECT count(*) FROM flet_montrg.temperature_raw") == rows:
            return
        print(f"generating {rows:,} raw rows in {database} ...", flush=True)
        started = time.perf_counter()
        async with conn.transaction():
            await conn.execute("TRUNCATE flet_montrg.temperature_raw")
            await conn.execute("ALTER TABLE flet_montrg.temperature_raw DROP CONSTRAINT IF EXISTS pk_temperature_raw")
            await conn.execute("DROP INDEX IF EXISTS flet_montrg.ix_temperature_raw_capture_dt")
            days = [lo + timedelta(days=n) for n in range((hi - lo + timedelta(days=1) - timedelta(microseconds=1)) // timedelta(days=1))]
            following = asyncio.create_task(asyncio.to_thread(day_bytes, days[0]))
            for n in range(len(days)):
                data = await following
                if n + 1 < len(days):
                    following = asyncio.create_task(asyncio.to_thread(day_bytes, days[n + 1]))
                await conn.copy_to_table("temperature_raw", schema_name="flet_montrg", source=io.BytesIO(data),
                                         columns=[c.name for c in temperature_raw.columns], format="binary", freeze=True)
        loaded = time.perf_counter() - started
        await conn.execute("SET maintenance_work_mem = '1GB'")
        await conn.execute("ALTER TABLE flet_montrg.temperature_raw ADD CONSTRAINT pk_temperature_raw PRIMARY KEY (loc_id, capture_dt)")
        await conn.execute("CREATE INDEX ix_temperature_raw_capture_dt ON flet_montrg.temperature_raw (capture_dt)")
        await conn.execute("VACUUM (ANALYZE) flet_montrg.temperature_raw")  # the rows are frozen already: sets the visibility map, statistics
        assert await conn.fetchval("SELECT count(*) FROM flet_montrg.temperature_raw") == rows
        print(f"  done in {time.perf_counter() - started:.0f} s (the load {loaded:.0f} s, then the keys and statistics)", flush=True)
    finally:
        await conn.close()


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


STEPS = ("extract_s", "write_s", "verify_s", "alerts_s")  # ChunkReport's step clocks


async def way_flow(size: str) -> tuple[int, dict[str, float]]:
    from flows import temperature_backfill

    lo, hi = span(size)
    report = await temperature_backfill(
        start=lo.isoformat(), end=hi.isoformat(), source_block=block(source_db(size)), target_block=block(TARGET)
    )
    return int(report.totals["location_hours"]), {k: report.totals[k] for k in STEPS} | {"chunks": len(report.chunks)}


async def way_agg(size: str) -> int:
    """The flow's aggregation alone: the source's partial aggregates of the chunks the backfill
    plans for this range (the same query, flows.store.read_partial_hourly), two at a time as the
    backfill keeps two chunks aggregating; nothing else."""
    from blocks import load_database
    from flows import store
    from flows.domain.backfill import plan_backfill
    from flows.domain.windows import Window
    from flows.settings import IN_FLIGHT

    lo, hi = span(size)
    source = await load_database(block(source_db(size)))
    window = Window(lo, hi)
    plan = plan_backfill(window, None, await store.source_horizon(source), await store.estimate_raw_rows(source, window), None)
    gate = asyncio.Semaphore(IN_FLIGHT - 1)

    async def one_chunk(piece: Window) -> int:
        async with gate:
            return (await store.read_partial_hourly(source, piece)).height

    groups = sum(await asyncio.gather(*(one_chunk(p) for p in plan.pieces)))
    await source.dispose()
    return groups


async def one(way: str, size: str) -> None:
    """One measured run in this process; prints JSON: the work's seconds (after this process's
    imports), location-hours written, peak RSS. The parent times the whole process."""
    if way in ("flow", "agg"):
        import flows.pipelines.temperature_backfill  # noqa: F401 - imported before the inner clock (the parent's counts it)
    fn = {"A": way_a, "B": way_b, "flow": way_flow, "agg": way_agg}[way]
    started, cpu = time.perf_counter(), time.process_time()
    done = await fn(size)
    seconds, cpu = time.perf_counter() - started, time.process_time() - cpu
    groups, steps = done if isinstance(done, tuple) else (done, {})
    print(json.dumps({"seconds": seconds, "cpu_s": cpu, "groups": groups, "rss_mb": peak_rss_mb(), **steps}))


async def etl(database: str, hour: str, lookback: int) -> None:
    """temperature_etl for `hour` from `database`, in this process; prints JSON as `one` does."""
    from flows import temperature_etl

    started = time.perf_counter()
    report = await temperature_etl(hour=hour, lookback_hours=lookback, source_block=block(database), target_block=block(TARGET))
    seconds = time.perf_counter() - started
    print(json.dumps({"seconds": seconds, "groups": int(report.totals["location_hours"]), "rows": int(report.totals["raw_rows"]),
                      "written": int(report.totals["inserted"] + report.totals["updated"]), "rss_mb": peak_rss_mb()}))


async def fixed() -> None:
    """A flow run with nothing to do: a backfill of a day without readings; prints JSON."""
    from flows import temperature_backfill

    started = time.perf_counter()
    await temperature_backfill(start="2023-06-01", end="2023-06-01", source_block=block(source_db("1M")), target_block=block(TARGET))
    print(json.dumps({"seconds": time.perf_counter() - started, "rss_mb": peak_rss_mb()}))


async def clear_target(window=None) -> None:
    """Empty the target (or its rows of `window`): done by the parent, between measured processes."""
    import asyncpg

    tgt = await asyncpg.connect(f"{PG}/{TARGET}")
    if window is None:
        await tgt.execute("TRUNCATE flet_montrg.temperature")
    else:
        await tgt.execute("DELETE FROM flet_montrg.temperature WHERE ymd || hh >= $1 AND ymd || hh < $2",
                          f"{window.start:%Y%m%d%H}", f"{window.end:%Y%m%d%H}")
    await tgt.close()


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


def child(args: list[str], env: dict[str, str]) -> dict:
    """This file with `args` in a fresh process: its JSON, plus `whole` (common.json_child)."""
    return json_child(__file__, args, env)


def command_seconds(code: str, env: dict[str, str]) -> float:
    return timed([sys.executable, "-c", code], env)[0]


def median(runs: list[dict], key: str) -> float:
    return statistics.median(r[key] for r in runs)


def backfills(env: dict[str, str]) -> bool:
    failed = False
    for size, rows in SIZES.items():
        results: dict[str, list[dict]] = {"A": [], "B": [], "flow": []}
        aggregation: list[dict] = []
        ratios: dict[tuple[str, str], list[float]] = {}  # (way, reference) -> per repetition, whole processes
        for rep in range(REPEATS):
            tables = {}
            for way in ("A", "B", "flow"):
                asyncio.run(clear_target())
                results[way].append(child(["one", way, size], env))
                r = results[way][-1]
                print(f"  {size} rep {rep + 1} {way}: whole process {r['whole']:.2f} s (work {r['seconds']:.2f} s)", flush=True)
                tables[way] = asyncio.run(written())  # after the measured process ended: not timed
            aggregation.append(child(["one", "agg", size], env))  # writes nothing
            print(f"  {size} rep {rep + 1} the flow's aggregation alone: work {aggregation[-1]['seconds']:.2f} s", flush=True)
            wrong = disagreements(tables)
            agreed = (f"  {size} rep {rep + 1}: A, B and the flow wrote the same {len(tables['A']):,} location-hours "
                      "(max exact, avg within 5e-5)")
            print(f"  FAIL: {size} rep {rep + 1}: " + "; ".join(wrong[:5]) if wrong else agreed, flush=True)
            failed |= bool(wrong)
            for way in results:
                for reference in ("A", "B"):
                    ratio = results[way][-1]["whole"] / results[reference][-1]["whole"]
                    ratios.setdefault((way, reference), []).append(ratio)
        print(f"\nbackfill of {rows:,} raw rows ({LOCATIONS} locations at 10 s), PostgreSQL -> PostgreSQL, median of {REPEATS}")
        print("whole = a fresh process from start to exit (imports included); work = inside it, after its imports")
        print(f"{'way':<40}{'whole s':>9}{'s/1M rows':>11}{'work s':>8}{'peak RSS MB':>13}{'x A':>7}{'x B':>7}")
        names = {"A": "A: the seed's SQL, result upserted", "B": "B: the seed's hook pattern (per hour)",
                 "flow": "temperature_backfill flow (pushdown)"}
        for way, runs in results.items():
            whole, work = median(runs, "whole"), median(runs, "seconds")
            rss = max(r["rss_mb"] for r in runs)
            x_a, x_b = (statistics.median(ratios[(way, ref)]) for ref in ("A", "B"))
            print(f"{names[way]:<40}{whole:>9.2f}{whole / rows * 1e6:>11.2f}{work:>8.2f}{rss:>13.0f}{x_a:>7.2f}{x_b:>7.2f}")
        print(f"flow / A per repetition (whole processes): {', '.join(f'{r:.2f}' for r in ratios[('flow', 'A')])}")
        profile(results["flow"], aggregation)
    return failed


def profile(flow: list[dict], aggregation: list[dict]) -> None:
    """Where the flow's work goes: its chunks' step clocks (ChunkReport), its process CPU, and the
    same chunks' aggregation alone (way_agg)."""
    work, alone = median(flow, "seconds"), median(aggregation, "seconds")
    per_rep = [f["seconds"] / a["seconds"] for f, a in zip(flow, aggregation)]
    print(f"the flow's work, step by step (median of {REPEATS}; {flow[0]['chunks']} chunks; wall seconds summed over "
          "the chunks: a chunk's extract overlaps the others' steps)")
    names = {"extract_s": "extract: the source's aggregation, checks", "write_s": "write: plan against the stored rows, upsert",
             "verify_s": "verify: the stored rows against the computed", "alerts_s": "alerts and alarm episodes"}
    for key, name in names.items():
        print(f"  {name:<48}{median(flow, key):>7.2f} s")
    print(f"  {'the flow call, wall (work)':<48}{work:>7.2f} s  (process CPU {median(flow, 'cpu_s'):.2f} s)")
    print(f"  {'the same chunks aggregated alone, wall':<48}{alone:>7.2f} s  (process CPU {median(aggregation, 'cpu_s'):.2f} s)")
    print(f"  work / aggregation alone: {statistics.median(per_rep):.2f}x ({', '.join(f'{r:.2f}' for r in per_rep)})\n")


def fixed_cost(env: dict[str, str]) -> None:
    imports = {code: [command_seconds(code, env) for _ in range(REPEATS)]
               for code in ("import prefect, prefect_sqlalchemy", "import flows", "import flows.pipelines.temperature_backfill")}
    runs = [child(["fixed"], env) for _ in range(REPEATS)]
    base = statistics.median(imports["import prefect, prefect_sqlalchemy"])
    print(f"a flow run's fixed cost, fresh processes, median of {REPEATS}")
    for code, times in imports.items():
        print(f"  python -c {code!r:<42}{statistics.median(times):>7.2f} s  ({statistics.median(times) / base:.2f}x)")
    whole = median(runs, "whole")
    print(f"  backfill of a day without readings, whole     {whole:>7.2f} s  ({whole / base:.2f}x; "
          f"the flow call inside it {median(runs, 'seconds'):.2f} s, peak RSS {max(r['rss_mb'] for r in runs):.0f} MB)\n")


def hourly_job(env: dict[str, str]) -> None:
    from zoneinfo import ZoneInfo

    from flows.domain.windows import etl_window

    hour = START + timedelta(days=3, hours=14)
    window = etl_window(hour, hour, 3, ZoneInfo("Asia/Seoul"))
    first, rerun = [], []
    for _ in range(REPEATS):
        asyncio.run(clear_target(window))
        first.append(child(["etl", source_db("10M"), hour.isoformat(), "3"], env))
        rerun.append(child(["etl", source_db("10M"), hour.isoformat(), "3"], env))
    assert all(r["written"] == r["groups"] > 0 for r in first) and all(r["written"] == 0 for r in rerun)
    print(f"temperature_etl for one hour with its 3-hour look-back ({first[0]['rows']:,} raw rows, "
          f"{first[0]['groups']:,} location-hours), median of {REPEATS}")
    for label, runs in (("first load (hours not in the target)", first), ("rerun (nothing changes)", rerun)):
        print(f"  {label:<40} whole process {median(runs, 'whole'):>6.2f} s, the flow call {median(runs, 'seconds'):.2f} s")
    print()
    print(f"the hourly job as locations grow: one hour at 10 s, no look-back, first load, median of {REPEATS}")
    print(f"  {'locations':>10}{'raw rows':>12}{'whole s':>9}{'flow call s':>13}{'s per 1M rows (flow call)':>28}")
    for n in SCALE_LOCATIONS:
        runs = []
        for _ in range(REPEATS):
            asyncio.run(clear_target())
            runs.append(child(["etl", scale_db(n), SCALE_HOUR.isoformat(), "0"], env))
        rows = runs[0]["rows"]
        print(f"  {n:>10,}{rows:>12,}{median(runs, 'whole'):>9.2f}{median(runs, 'seconds'):>13.2f}"
              f"{median(runs, 'seconds') / rows * 1e6:>28.2f}")
    print()


def main() -> None:
    env = {**os.environ, "PREFECT_SERVER_ANALYTICS_ENABLED": "false", "PREFECT_LOGGING_LEVEL": "WARNING"}
    server = start_server(env)
    os.environ.update(env)
    try:
        asyncio.run(ensure_data())
        failed = backfills(env)
        fixed_cost(env)
        hourly_job(env)
    finally:
        if server is not None:
            server.terminate()
            server.wait(30)
    if failed:
        sys.exit("FAIL: the contenders disagree (see above)")


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "one":
        asyncio.run(one(sys.argv[2], sys.argv[3]))
    elif len(sys.argv) == 5 and sys.argv[1] == "etl":
        asyncio.run(etl(sys.argv[2], sys.argv[3], int(sys.argv[4])))
    elif len(sys.argv) == 2 and sys.argv[1] == "fixed":
        asyncio.run(fixed())
    elif len(sys.argv) == 1:
        main()
    else:
        sys.exit(__doc__)
