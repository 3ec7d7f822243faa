"""Deploy prefect.yaml's deployments WITHOUT an image, for workers that run the code in place.

    .venv/bin/python -m deployments.process_deploy --pool montrg-process [--directory /srv/flet-montrg] [--suffix process]

Reads prefect.yaml, so schedules, parameters, tags, concurrency and queues stay exactly as
defined there; only the image build/push is dropped, the pull step points at `--directory` (where
the project is checked out and installed on the worker host) and every deployment goes to
`--pool` (a process pool: `montrg pool create --pool montrg-process --type process`). Each
deployment's name gets `-SUFFIX` (`temperature-etl/hourly-process`), so these deployments never
replace the Docker pool's ones of the same flows (Prefect keys a deployment by flow and name: the
last deploy of a name wins). The rewritten file, in a temporary folder outside the checkout, is
handed to `prefect --no-prompt deploy --all --prefect-file`.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]


def without_image(config: dict, pool: str, directory: str, suffix: str = "process") -> dict:
    """prefect.yaml's configuration for a process pool: no build/push, code at `directory`,
    deployment names ending in `-suffix`."""
    out = {k: v for k, v in config.items() if k not in ("build", "push", "definitions")}
    out["pull"] = [{"prefect.deployments.steps.set_working_directory": {"directory": directory}}]
    out["deployments"] = [
        {**d, "name": f"{d['name']}-{suffix}" if suffix else d["name"], "work_pool": {"name": pool, "work_queue_name": d["work_pool"].get("work_queue_name"), "job_variables": {}}}
        for d in config["deployments"]
    ]
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pool", required=True, help="the process work pool")
    parser.add_argument("--directory", default=str(ROOT), help="the project's path on the worker host")
    parser.add_argument("--prefect-file", default=str(ROOT / "prefect.yaml"))
    parser.add_argument("--suffix", default="process", help="appended to every deployment name (default: process)")
    args = parser.parse_args(argv)
    config = yaml.safe_load(Path(args.prefect_file).read_text())
    with tempfile.TemporaryDirectory(prefix="montrg-deploy-") as folder:  # never in the checkout
        rewritten = Path(folder) / "prefect.yaml"
        rewritten.write_text(yaml.safe_dump(without_image(config, args.pool, args.directory, args.suffix), sort_keys=False))
        return subprocess.run(
            [sys.executable, "-m", "prefect", "--no-prompt", "deploy", "--all", "--prefect-file", str(rewritten)], cwd=ROOT
        ).returncode


if __name__ == "__main__":
    sys.exit(main())
