"""The Prefect server's settings of deployments/server.env, for the Python code that starts a server
(the soak, the tests' full servers); `make server` and the compose stack read the file itself."""

from __future__ import annotations

from pathlib import Path

SERVER_ENV = Path(__file__).with_name("server.env")


def server_settings(path: Path = SERVER_ENV) -> dict[str, str]:
    """`NAME=value` lines of `path`; blank lines and `#` comments skipped."""
    settings = {}
    for number, line in enumerate(path.read_text().splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        name, sep, value = line.partition("=")
        if not sep or not name.strip():
            raise ValueError(f"{path}:{number}: not NAME=value: {line!r}")
        settings[name.strip()] = value.strip()
    return settings
