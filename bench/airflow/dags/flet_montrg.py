"""The seed's two aggregation DAGs, as the plant ran them on Airflow 2.10 with PostgreSQL hooks, for
`make bench-airflow` (run with `airflow dags test`, never deployed). Connections come from the
environment: AIRFLOW_CONN_MONTRG_IOT (raw readings) and AIRFLOW_CONN_MONTRG_HQ (hourly table).

    flet_montrg_temperature_etl       hourly (0 * * * *): the last hour and a 3-hour look-back
    flet_montrg_temperature_backfill  manual, conf {"start": ISO, "end": ISO}: the range at once
"""

from __future__ import annotations

from datetime import datetime, timedelta

from airflow import DAG
from airflow.operators.python import PythonOperator
from airflow.providers.postgres.hooks.postgres import PostgresHook

SEED_SQL = """
SELECT loc_id, TO_CHAR(capture_dt, 'YYYYMMDD') AS ymd, TO_CHAR(capture_dt, 'HH24') AS hh,
       MAX(temperature), AVG(temperature), MAX(humidity), AVG(humidity),
       MAX(pcv_temperature), AVG(pcv_temperature)
FROM flet_montrg.temperature_raw
WHERE capture_dt >= %s AND capture_dt < %s
GROUP BY loc_id, TO_CHAR(capture_dt, 'YYYYMMDD'), TO_CHAR(capture_dt, 'HH24')
"""
FIELDS = ["loc_id", "ymd", "hh", "temperature_max", "temperature_avg", "humidity_max", "humidity_avg",
          "pcv_temperature_max", "pcv_temperature_avg"]


def aggregate(start: datetime, end: datetime) -> int:
    """The seed's task: aggregate [start, end) in the IoT database, upsert into the HQ table."""
    rows = PostgresHook(postgres_conn_id="montrg_iot").get_records(SEED_SQL, parameters=(start, end))
    PostgresHook(postgres_conn_id="montrg_hq").insert_rows(
        "flet_montrg.temperature", rows, target_fields=FIELDS, replace=True, replace_index=["loc_id", "ymd", "hh"],
        commit_every=5000,
    )
    return len(rows)


def hourly(data_interval_end=None, **_):
    end = datetime.fromisoformat(data_interval_end.isoformat()).replace(tzinfo=None)
    return aggregate(end - timedelta(hours=4), end)


def backfill(dag_run=None, **_):
    return aggregate(datetime.fromisoformat(dag_run.conf["start"]), datetime.fromisoformat(dag_run.conf["end"]))


with DAG("flet_montrg_temperature_etl", schedule="0 * * * *", start_date=datetime(2024, 1, 1), catchup=False) as etl_dag:
    PythonOperator(task_id="aggregate_hour", python_callable=hourly)

with DAG("flet_montrg_temperature_backfill", schedule=None, start_date=datetime(2024, 1, 1), catchup=False) as backfill_dag:
    PythonOperator(task_id="aggregate_range", python_callable=backfill)
