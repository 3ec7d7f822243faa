"""prefect.yaml build and push steps with settings from the environment, and sensible defaults.

| variable | default | meaning |
| --- | --- | --- |
| MONTRG_IMAGE | flet-montrg | image name |
| MONTRG_IMAGE_TAG | latest | image tag |
| MONTRG_REGISTRY | (none) | registry prefix, e.g. registry.plant.local:5000; none = build only, no push |
| MONTRG_BASE_IMAGE | (Dockerfile's: prefecthq/prefect:3.9.1-python3.11) | base image; used as it is, not pulled |
| MONTRG_DOCKER_BUILD_NETWORK | (Docker's default) | network of the build containers, e.g. host |

prefect-docker's steps take their image name literally, and prefect.yaml's `{{ $VAR }}` has no
default; these two thin steps add the defaults and make the push skippable without a second file.
"""

from __future__ import annotations

import os
from typing import Any


def image_name() -> str:
    name = os.environ.get("MONTRG_IMAGE") or "flet-montrg"
    registry = (os.environ.get("MONTRG_REGISTRY") or "").rstrip("/")
    return f"{registry}/{name}" if registry else name


def build_image(dockerfile: str = "Dockerfile", **build_kwargs: Any) -> dict[str, Any]:
    """prefect_docker's build_docker_image with the image name, tag and base from the environment."""
    from prefect_docker.deployments.steps import build_docker_image

    buildargs = dict(build_kwargs.pop("buildargs", None) or {})
    if os.environ.get("MONTRG_BASE_IMAGE"):
        buildargs["BASE_IMAGE"] = os.environ["MONTRG_BASE_IMAGE"]
        # a base given by name may be local only (built without a registry): use it, do not pull
        build_kwargs.setdefault("pull", False)
    if os.environ.get("MONTRG_DOCKER_BUILD_NETWORK"):
        build_kwargs["network_mode"] = os.environ["MONTRG_DOCKER_BUILD_NETWORK"]
    return build_docker_image(
        image_name=image_name(),
        tag=os.environ.get("MONTRG_IMAGE_TAG") or "latest",
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
