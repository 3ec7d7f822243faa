"""The montrg command line, run as users run it (a subprocess against the test Prefect server)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from tests.helpers import unique

PASSWORD = "s3cr3t-marker-pw"


@pytest.fixture
def closed_port_number() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def montrg(env: dict[str, str], *args: str, stdin: str | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "flows", *args], env=env, input=stdin, capture_output=True, text=True, timeout=120
    )


def test_blocks_create_never_prints_the_password(prefect_env):
    name = unique("t-cli-")
    url = f"postgresql://montrg:{PASSWORD}@127.0.0.1:5432/test"  # no such user: saved without the check
    shown = montrg(prefect_env, "blocks", "create", name, url, "--no-check")
    from_stdin = montrg(prefect_env, "blocks", "create", name, "-", "--no-check", stdin=url + "\n")
    for done in (shown, from_stdin):
        assert done.returncode == 0, done.stderr
        assert PASSWORD not in done.stdout + done.stderr
        assert f"saved block '{name}': postgresql+asyncpg://montrg:***@127.0.0.1:5432/test" in done.stdout


@pytest.mark.parametrize(
    "url,message",
    [
        (f"postgresql://u@127.0.0.1/db?password={PASSWORD}", "credential in its query string (password=***)"),
        (f"postgresql://u@127.0.0.1/db?sslmode=require&sslpassword={PASSWORD}", "(sslpassword=***)"),
        (f"mysql://u@127.0.0.1/db?passwd={PASSWORD}", "(passwd=***)"),
        (f"postgresql://u:{PASSWORD[:4]}@{PASSWORD[4:]}@127.0.0.1/db", "more than one '@' before the host"),
    ],
)
def test_blocks_create_refuses_passwords_outside_the_secret_field(prefect_env, url, message):
    done = montrg(prefect_env, "blocks", "create", unique("t-cli-"), url)
    assert done.returncode == 2 and message in done.stderr, done.stderr
    assert PASSWORD not in done.stdout + done.stderr and PASSWORD[4:] not in done.stdout + done.stderr


def test_blocks_create_rejects_bad_urls_without_echoing_them(prefect_env):
    bad_port = montrg(prefect_env, "blocks", "create", unique("t-cli-"), f"postgresql://u:{PASSWORD}@h:notaport/db")
    bad_driver = montrg(prefect_env, "blocks", "create", unique("t-cli-"), f"db2://u:{PASSWORD}@h/db")
    assert bad_port.returncode == 2 and "not a database URL" in bad_port.stderr
    assert bad_driver.returncode == 2 and "driver 'db2' is not supported" in bad_driver.stderr
    assert PASSWORD not in bad_port.stderr + bad_driver.stderr + bad_port.stdout + bad_driver.stdout


@pytest.mark.parametrize("kind", ["postgresql", "mariadb", "sqlite"])
async def test_db_init_creates_then_changes_nothing(kind, prefect_env, pg_url, mariadb_url, sqlite_url):
    url = {"postgresql": pg_url, "mariadb": mariadb_url, "sqlite": sqlite_url}[kind]()
    url = await url if kind == "postgresql" else url
    env = dict(prefect_env)
    if kind == "mariadb":
        env["MONTRG_SCHEMA"] = os.environ["MONTRG_SCHEMA"]  # the test's own schema
    name = unique("t-init-")
    assert montrg(env, "blocks", "create", name, url).returncode == 0

    first = montrg(env, "db", "init", "--block", name)
    second = montrg(env, "db", "init", "--block", name)

    assert first.returncode == 0, first.stderr
    assert "created table temperature_raw" in first.stdout and "created table temperature" in first.stdout
    assert second.returncode == 0, second.stderr
    assert "is up to date, nothing changed" in second.stdout


async def test_db_init_upgrades_an_older_table(prefect_env, pg_url):
    url = await pg_url()
    engine = create_async_engine(url)
    async with engine.begin() as conn:  # the seed's table: no *_min, counts or calc_dt
        await conn.execute(text("CREATE SCHEMA flet_montrg"))
        await conn.execute(text(
            "CREATE TABLE flet_montrg.temperature (loc_id varchar(64) NOT NULL, ymd varchar(8) NOT NULL, "
            "hh varchar(2) NOT NULL, temperature_max float8, temperature_avg float8, humidity_max float8, "
            "humidity_avg float8, pcv_temperature_max float8, pcv_temperature_avg float8, "
            "PRIMARY KEY (loc_id, ymd, hh))"
        ))
        await conn.execute(text("INSERT INTO flet_montrg.temperature (loc_id, ymd, hh, temperature_max) VALUES ('A', '20240101', '00', 1.5)"))
    name = unique("t-init-")
    assert montrg(prefect_env, "blocks", "create", name, url).returncode == 0

    done = montrg(prefect_env, "db", "init", "--block", name)

    assert done.returncode == 0, done.stderr
    assert "added column temperature.temperature_min" in done.stdout
    assert "added column temperature.sample_count" in done.stdout
    assert "created index ix_temperature_ymd_hh" in done.stdout
    async with engine.connect() as conn:
        row = (await conn.execute(text("SELECT temperature_max, sample_count FROM flet_montrg.temperature"))).one()
    await engine.dispose()
    assert tuple(row) == (1.5, 0)


async def test_blocks_create_schema_option_puts_tables_in_that_schema(prefect_env, mariadb_url):
    """IoT and HQ on one MariaDB server: the HQ block names a schema of its own."""
    url, schema = mariadb_url(own_schema=True).split("?montrg_schema=")
    env = {**prefect_env, "MONTRG_SCHEMA": os.environ["MONTRG_SCHEMA"]}
    name = unique("t-hq-")
    created = montrg(env, "blocks", "create", name, url, "--schema", schema)
    initialised = montrg(env, "db", "init", "--block", name)
    bad = montrg(env, "blocks", "create", name, url, "--schema", "hq; drop")

    assert created.returncode == 0 and f"montrg_schema={schema}" in created.stdout
    assert initialised.returncode == 0 and f"created schema {schema}" in initialised.stdout
    assert bad.returncode == 2 and "'hq; drop' is not a valid identifier" in bad.stderr


def test_an_unreachable_prefect_api_is_one_clear_line():
    env = {**os.environ, "PREFECT_API_URL": "http://127.0.0.1:9/api"}
    done = montrg(env, "blocks", "create", unique("t-cli-"), f"postgresql://u:{PASSWORD}@127.0.0.1/db", "--no-check")
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        "montrg: error: the Prefect API (http://127.0.0.1:9/api) does not answer: ConnectError: All connection attempts failed; "
        "set PREFECT_API_URL to your server, or start one with: make server"
    ]


def test_a_missing_sqlite_folder_is_one_clear_line(prefect_env, tmp_path):
    name = unique("t-cli-")
    url = f"sqlite:///{tmp_path}/no/such/folder/x.db"
    checked = montrg(prefect_env, "blocks", "create", name, url)
    assert checked.returncode == 2 and checked.stderr.strip().splitlines() == [
        f"montrg: error: block '{name}' was not saved: sqlite+aiosqlite:///{tmp_path}/no/such/folder/x.db refused the connection "
        "(unable to open database file); check the host, port, database, user and password, or save it anyway with --no-check"
    ]
    assert montrg(prefect_env, "blocks", "create", name, url, "--no-check").returncode == 0
    for _ in range(3):  # the closed-loop race of the driver's thread showed up about one run in three
        done = montrg(prefect_env, "db", "init", "--block", name)
        assert done.returncode == 2
        assert done.stderr.strip().splitlines() == [
            f"montrg: error: block '{name}' (sqlite+aiosqlite:///{tmp_path}/no/such/folder/x.db): creating the schema failed: "
            "unable to open database file"
        ], done.stderr


def test_blocks_create_checks_the_url_and_the_server_before_saving(prefect_env, closed_port_number):
    name = unique("t-cli-")
    cases = {
        "postgresql://postgres@127.0.0.1:99999/db": "port 99999 is not a TCP port (1..65535)",
        "postgresql://postgres@127.0.0.1:5432": "the URL names no database",
        "postgresql://postgres@bad_host!/db": "host 'bad_host!' is not a host name or an IP address",
        f"postgresql://postgres:{PASSWORD}@127.0.0.1:{closed_port_number}/db": (
            f"postgresql+asyncpg://postgres:***@127.0.0.1:{closed_port_number}/db does not answer"),
        "postgresql://postgres@127.0.0.1:5432/montrg_no_such_db": 'refused the connection (database "montrg_no_such_db" does not exist)',
    }
    for url, message in cases.items():
        done = montrg(prefect_env, "blocks", "create", name, url)
        assert done.returncode == 2 and len(done.stderr.strip().splitlines()) == 1, done.stderr
        assert done.stderr.startswith(f"montrg: error: block '{name}' was not saved: ") and message in done.stderr, done.stderr
        assert PASSWORD not in done.stdout + done.stderr
    good = montrg(prefect_env, "blocks", "create", name, "postgresql://postgres@127.0.0.1:5432/test")
    assert good.returncode == 0 and good.stdout.startswith(f"saved block '{name}': postgresql+asyncpg://postgres@127.0.0.1:5432/test (PostgreSQL 1")
    debug = montrg(prefect_env, "--debug", "blocks", "create", name, "postgresql://postgres@127.0.0.1:99999/db")
    assert debug.returncode != 0 and "Traceback" in debug.stderr  # the whole story, when asked for
