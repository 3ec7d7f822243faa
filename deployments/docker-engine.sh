#!/usr/bin/env bash
# Make sure a Docker engine answers: install Debian's docker.io (and mmdebstrap, for the local base
# image) when missing, start dockerd in the background when it is not running. Needs root.
set -euo pipefail
if docker info >/dev/null 2>&1; then exit 0; fi
if ! command -v dockerd >/dev/null 2>&1 || ! command -v mmdebstrap >/dev/null 2>&1; then
    echo "installing docker.io and mmdebstrap"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q docker.io mmdebstrap >/dev/null \
        || { apt-get update -q >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -q docker.io mmdebstrap >/dev/null; }
fi
echo "starting dockerd"
nohup dockerd >/var/log/montrg-dockerd.log 2>&1 &
for _ in $(seq 60); do docker info >/dev/null 2>&1 && exit 0; sleep 1; done
echo "dockerd did not come up; see /var/log/montrg-dockerd.log" >&2
exit 1
