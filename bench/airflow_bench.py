"""`make bench-airflow`: the seed's own stack beside the flows, on the same PostgreSQL data.

Airflow 2.10 with apache-airflow-providers-postgres lives in a virtualenv of its own
(.venv-airflow, made by `make bench-airflow`; never the project's). The seed's DAGs
(bench/airflow/dags/flet_montrg.py: the seed's SQL through PostgresHook, upserted into the HQ
table) run with `airflow dags test <dag> <date>`: the whole DAG run in one process, Airflow's own
start-up included, timed from outside from spawn to exit. The flows run the same jobs, each a
fresh process timed the same way (bench/hourly.py's `child`), on a running Prefect server. Medians
of 3; the target is emptied before each run (not timed), and after each pair the two tables are
compared as bench/hourly.py compares its contenders.
"""

from __future__ import annotations

import asyncio
import json
import os
import statistics
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import hourly  # noqa: E402
from common import PG, start_server, timed  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
AIRFLOW = ROOT / ".venv-airflow" / "bin" / "airflow"
HOME = ROOT / "bench-data" / "airflow-home"


def airflow_env(source: str) -> dict[str, str]:
    pg = PG.replace("postgresql://", "postgres://")
    return {
        **{k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "VIRTUAL_ENV"))},
        "AIRFLOW_HOME": str(HOME), "AIRFLOW__CORE__DAGS_FOLDER": str(ROOT / "bench" / "airflow" / "dags"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW_CONN_MONTRG_IOT": f"{pg}/{source}", "AIRFLOW_CONN_MONTRG_HQ": f"{pg}/{hourly.TARGET}",
    }


def dags_test(dag: str, date: str, source: str, conf: dict | None = None) -> float:
    """`airflow dags test` of `dag` for `date`, timed from spawn to exit."""
    args = [str(AIRFLOW), "dags", "test", dag, date] + (["-c", json.dumps(conf)] if conf else [])
    return timed(args, airflow_env(source), succeeded="state=success")[0]


def main() -> None:
    if not AIRFLOW.exists():
        sys.exit(f"{AIRFLOW} is missing: run `make bench-airflow`, which makes that virtualenv")
    env = {**os.environ, "PREFECT_SERVER_ANALYTICS_ENABLED": "false", "PREFECT_LOGGING_LEVEL": "WARNING"}
    server = start_server(env)
    os.environ.update(env)
    subprocess.run([str(AIRFLOW), "db", "migrate"], env=airflow_env("postgres"), check=True, capture_output=True)
    rows_out, failed = [], False
    try:
        asyncio.run(hourly.ensure_data())
        hour = hourly.START + timedelta(days=3, hours=14)
        # the DAG run of logical date H covers [H - 1 h, H): H = the flow's hour + 1 h, then the same 3-hour look-back
        jobs = [("hourly run, one hour + 3 h look-back (first load)", "flet_montrg_temperature_etl", (hour + timedelta(hours=1)).isoformat(), None,
                 ["etl", hourly.source_db("10M"), hour.isoformat(), "3"], hourly.source_db("10M"))]
        for size in hourly.SIZES:
            lo, hi = hourly.span(size)
            jobs.append((f"backfill of {hourly.SIZES[size]:,} raw rows", "flet_montrg_temperature_backfill", lo.isoformat(),
                         {"start": lo.isoformat(), "end": hi.isoformat()}, ["one", "flow", size], hourly.source_db(size)))
        for label, dag, date, conf, flow_args, source in jobs:
            airflow, flow, ratios = [], [], []
            for _ in range(hourly.REPEATS):
                asyncio.run(hourly.clear_target())
                airflow.append(dags_test(dag, date, source, conf))
                theirs = asyncio.run(hourly.written())
                asyncio.run(hourly.clear_target())
                flow.append(hourly.child(flow_args, env)["whole"])
                ours = asyncio.run(hourly.written())
                wrong = hourly.disagreements({"airflow": theirs, "flow": ours})
                if wrong:
                    print(f"  FAIL: {label}: " + "; ".join(wrong[:5]), flush=True)
                    failed = True
                ratios.append(flow[-1] / airflow[-1])
                print(f"  {label}: airflow dags test {airflow[-1]:.2f} s, flow {flow[-1]:.2f} s; tables agree on {len(ours):,} "
                      "location-hours" if not wrong else "", flush=True)
            rows_out.append((label, statistics.median(airflow), statistics.median(flow), statistics.median(ratios)))
    finally:
        if server is not None:
            server.terminate()
            server.wait(30)
    print(f"\nthe seed's DAGs on Airflow 2.10 (`airflow dags test`, one process, its start-up included) beside the flows "
          f"(a fresh process each, on a running Prefect server), PostgreSQL -> PostgreSQL, median of {hourly.REPEATS}")
    print(f"{'job':<56}{'Airflow s':>11}{'flow s':>9}{'flow / Airflow':>16}")
    for label, a, f, r in rows_out:
        print(f"{label:<56}{a:>11.2f}{f:>9.2f}{r:>16.2f}")
    if failed:
        sys.exit("FAIL: Airflow and the flows disagree (see above)")


if __name__ == "__main__":
    main()
