#!/usr/bin/env bash
# Build a local Python base image without a container registry (for machines that cannot pull
# prefecthq/prefect): Debian bookworm minbase with python3 + venv from the Debian mirror apt uses,
# plus this host's CA bundle (HTTPS may go through a proxy the host trusts).
#   deployments/local-base-image.sh [IMAGE]     default IMAGE: local/pybase:bookworm
set -euo pipefail
image=${1:-local/pybase:bookworm}
if docker image inspect "$image" >/dev/null 2>&1; then
    echo "base image $image exists"; exit 0
fi
mirror=$(grep -hoE '^URIs: *http[^ ]*debian/?$' /etc/apt/sources.list.d/*.sources 2>/dev/null | head -1 | sed 's/^URIs: *//')
mirror=${mirror:-$(grep -hoE '^deb +http[^ ]+debian/?' /etc/apt/sources.list 2>/dev/null | head -1 | awk '{print $2}')}
mirror=${mirror:-http://deb.debian.org/debian}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
echo "building $image from $mirror"
mmdebstrap --variant=minbase --include=python3,python3-venv,ca-certificates \
    --customize-hook='cp /etc/ssl/certs/ca-certificates.crt "$1/etc/ssl/certs/ca-certificates.crt"' \
    bookworm "$work/base.tar" "$mirror"
docker import \
    --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    --change 'ENV PIP_CERT=/etc/ssl/certs/ca-certificates.crt SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt' \
    "$work/base.tar" "$image"
