"""prefect.yaml build and push steps with settings from the environment, and sensible defaults.

| variable | default | meaning |
| --- | --- | --- |
| MONTRG_IMAGE | flet-montrg | image name |
| MONTRG_IMAGE_TAG | the project's version and commit, e.g. 0.1.0-3f2a9c1 | image tag (the image is also tagged `latest`) |
| MONTRG_REGISTRY | (none) | registry prefix, e.g. registry.plant.local:5000; none = build only, no push |
| MONTRG_BASE_IMAGE | (Dockerfile's: prefecthq/prefect:3.9.1-python3.11) | base image; used as it is, not pulled |
| MONTRG_DOCKER_BUILD_NETWORK | (Docker's default) | network of the build containers, e.g. host |

prefect-docker's steps take their image name literally, and prefect.yaml's `{{ $VAR }}` has no
default; these two thin steps add the defaults and make the push skippable without a second file.
"""

from __future__ import annotations

import os
import subprocess
import sys
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]


def image_name() -> str:
    name = os.environ.get("MONTRG_IMAGE") or "flet-montrg"
    registry = (os.environ.get("MONTRG_REGISTRY") or "").rstrip("/")
    return f"{registry}/{name}" if registry else name


def image_tag() -> str:
    """MONTRG_IMAGE_TAG, else the project's version and short commit (`-dirty` with uncommitted
    changes): every version its own tag, so a pool that never pulls still runs the right code."""
    if os.environ.get("MONTRG_IMAGE_TAG"):
        return os.environ["MONTRG_IMAGE_TAG"]
    try:
        tag = version("flet-montrg")
    except PackageNotFoundError:
        tag = "0"
    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=ROOT, capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        return tag
    return f"{tag}-{commit}" + ("-dirty" if dirty.strip() else "")


def require_docker_engine() -> None:
    """Stop `prefect deploy` with one line and the fixes when no Docker engine answers (SystemExit:
    Prefect's step runner would wrap an exception in a traceback of its own)."""
    from flows.ops.doctor import docker_engine

    found = docker_engine()
    if not found.ok:
        print(f"montrg: error: the Docker engine {found.detail}: {found.fix}", file=sys.stderr)
        raise SystemExit(1)


def build_image(dockerfile: str = "Dockerfile", **build_kwargs: Any) -> dict[str, Any]:
    """prefect_docker's build_docker_image with the image name, tag and base from the environment,
    after checking that the Docker engine answers."""
    from prefect_docker.deployments.steps import build_docker_image

    require_docker_engine()
    buildargs = dict(build_kwargs.pop("buildargs", None) or {})
    if os.environ.get("MONTRG_BASE_IMAGE"):
        buildargs["BASE_IMAGE"] = os.environ["MONTRG_BASE_IMAGE"]
        # a base given by name may be local only (built without a registry): use it, do not pull
        build_kwargs.setdefault("pull", False)
    # docker-py keeps the classic builder's intermediate containers unless told otherwise
    build_kwargs.setdefault("rm", True)
    build_kwargs.setdefault("forcerm", True)
    if os.environ.get("MONTRG_DOCKER_BUILD_NETWORK"):
        build_kwargs["network_mode"] = os.environ["MONTRG_DOCKER_BUILD_NETWORK"]
    return build_docker_image(
        image_name=image_name(),
        tag=image_tag(),
        additional_tags=["latest"],
        dockerfile=dockerfile,
        buildargs=buildargs or None,
        **build_kwargs,
    )


def push_image(image_name: str, tag: str, **push_kwargs: Any) -> dict[str, Any]:
    """prefect_docker's push_docker_image, skipped (with a message) when MONTRG_REGISTRY is unset."""
    if not os.environ.get("MONTRG_REGISTRY"):
        print(f"MONTRG_REGISTRY is not set: {image_name}:{tag} stays local (push skipped)")
        return {"image_name": image_name, "tag": tag, "pushed": False}
    from prefect_docker.deployments.steps import push_docker_image

    return {**push_docker_image(image_name=image_name, tag=tag, **push_kwargs), "pushed": True}
