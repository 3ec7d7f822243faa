"""The faults of `make soak FAULTS=1`, and the parts they act on.

    PrivateCluster  a PostgreSQL cluster of the soak's own (initdb + pg_ctl in a temporary folder, as
                    the postgres user when run as root), holding the IoT and HQ databases: the
                    machine's shared PostgreSQL service is never stopped
    Gate            a TCP port in front of the gateways' database: closed, every connection through
                    it is cut and new ones are refused (the gateways themselves still write)
    Service         a process the soak starts, SIGKILLs and starts again (the Prefect server, workers)
    Fault           one fault of the schedule: what, when it was injected and healed, what it hit
    Webhook         a loopback HTTP server behind a notification block: keeps what the automations send

The schedule (`plan`) injects each fault while the schedules run, heals it after its stated
duration, and leaves quiet time between faults (2 minutes in the 30-minute soak).
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import IO


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class PrivateCluster:
    """A PostgreSQL cluster in `folder`, on a free loopback port, trust authentication."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.data = folder / "data"
        self.port = free_port()

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"

    def _run(self, *cmd: str, timeout: float = 120) -> None:
        if os.geteuid() == 0:  # initdb and postgres refuse to run as root
            cmd = ("runuser", "-u", "postgres", "--", *cmd)
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
        if done.returncode:
            raise RuntimeError(f"{' '.join(cmd)} failed: {done.stdout[-2000:]} {done.stderr[-2000:]}")

    def create(self) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        if os.geteuid() == 0:
            shutil.chown(self.folder, "postgres", "postgres")
        self._run("initdb", "-D", str(self.data), "-U", "postgres", "-A", "trust", "-E", "UTF8", "--no-sync")
        self.start()

    def start(self) -> None:
        options = f"-p {self.port} -k {self.folder} -c listen_addresses=127.0.0.1 -c max_connections=300"
        self._run("pg_ctl", "-D", str(self.data), "-l", str(self.folder / "server.log"), "-w", "-t", "120", "-o", options, "start")

    def stop(self, mode: str = "fast") -> None:
        self._run("pg_ctl", "-D", str(self.data), "-m", mode, "-w", "-t", "120", "stop")

    def destroy(self) -> None:
        try:
            self.stop("immediate")
        except (RuntimeError, subprocess.TimeoutExpired):
            pass  # not running
        shutil.rmtree(self.folder, ignore_errors=True)


class Gate:
    """A loopback port forwarding to `target_port`; `close()` cuts every connection through it and
    refuses new ones until `open()`."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.port = free_port()
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()

    async def open(self) -> None:
        self._server = await asyncio.start_server(self._pipe, "127.0.0.1", self.port, reuse_address=True)

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            for writer in list(self._writers):
                writer.transport.abort()
            await self._server.wait_closed()
            self._server = None

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
        except OSError:
            writer.transport.abort()
            return
        self._writers |= {writer, up_writer}

        async def copy(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            try:
                while data := await src.read(65536):
                    dst.write(data)
                    await dst.drain()
            except (ConnectionError, OSError):
                pass
            finally:
                dst.transport.abort()  # one side is gone: so is the other

        try:
            await asyncio.gather(copy(reader, up_writer), copy(up_reader, writer))
        except asyncio.CancelledError:  # the soak is ending
            writer.transport.abort()
            up_writer.transport.abort()
        finally:
            self._writers -= {writer, up_writer}


class Service:
    """A process of the soak's (its own session, so a SIGKILL takes its children too), logging to `log`."""

    def __init__(self, name: str, cmd: list[str], env: dict[str, str], log: Path) -> None:
        self.name, self.cmd, self.env, self.log = name, cmd, env, log
        self.proc: subprocess.Popen | None = None
        self._out: IO | None = None

    def start(self) -> None:
        self._out = open(self.log, "a")  # noqa: SIM115 - open while the process runs
        self.proc = subprocess.Popen(self.cmd, env=self.env, stdout=self._out, stderr=subprocess.STDOUT, start_new_session=True)

    def kill(self) -> None:
        """SIGKILL, as a host that loses power: no clean-up, no goodbye to the API."""
        if self.proc is not None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        os.killpg(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(60)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()

    def submitted(self) -> list[str]:
        """The flow runs this worker (its every incarnation) took, from its log."""
        return re.findall(r"submitting flow run '([0-9a-f-]{36})'", self.log.read_text(errors="replace"))


@dataclass
class Fault:
    name: str
    what: str
    seconds: float  # how long it lasts before it is healed
    affects: tuple[str, ...]  # the deployments whose recovery is timed
    act: Callable[[Fault], Awaitable[None]]  # injects, waits `seconds`, heals; sets the times and `detail`
    injected: datetime | None = None
    healed: datetime | None = None
    detail: str = ""
    notes: list[str] = field(default_factory=list)

    def inject(self) -> None:
        self.injected = datetime.now(UTC)

    def heal(self) -> None:
        self.healed = datetime.now(UTC)


def gap_seconds(minutes: float, faults: list[Fault]) -> float:
    """Quiet time before each fault: 2 minutes, less when the soak is too short for that (short form)."""
    spare = minutes * 60 - sum(f.seconds for f in faults)
    return max(30.0, min(120.0, spare / (len(faults) + 1)))


async def run_plan(faults: list[Fault], minutes: float, say: Callable[[str], None]) -> None:
    """Each fault at its planned time (quiet gap, fault, quiet gap, ...), one after the other."""
    gap = gap_seconds(minutes, faults)
    started = time.monotonic()
    at = 0.0
    for fault in faults:
        at += gap
        await asyncio.sleep(max(0.0, started + at - time.monotonic()))
        say(f"{(time.monotonic() - started) / 60:5.1f} min: {fault.name}: {fault.what}")
        await fault.act(fault)
        say(f"{(time.monotonic() - started) / 60:5.1f} min: {fault.name} healed{': ' + fault.detail if fault.detail else ''}")
        at = time.monotonic() - started
    await asyncio.sleep(max(0.0, started + minutes * 60 - time.monotonic()))


class Webhook:
    """A loopback HTTP server behind the soak's notification block: keeps what the automations send."""

    def __init__(self) -> None:
        received: list[dict] = []
        self.received = received

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802 - http.server's name
                received.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
                self.send_response(200)
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"

    def subjects(self) -> list[str]:
        return [str(b.get("subject", "")) for b in self.received]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
