# The image the Docker work pool runs: the project without its test extras, as a non-root user.
# BASE_IMAGE defaults to the official Prefect image matching the pinned prefect; where no registry
# is reachable, build deployments/local-base-image.sh and pass --build-arg BASE_IMAGE=local/pybase:bookworm.
ARG BASE_IMAGE=prefecthq/prefect:3.9.1-python3.11
FROM ${BASE_IMAGE}

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_DISABLE_PIP_VERSION_CHECK=1 \
    VIRTUAL_ENV=/opt/venv PATH=/opt/venv/bin:$PATH
WORKDIR /opt/flet-montrg

# SQL Server sources: the ODBC driver manager and FreeTDS (Microsoft's msodbcsql18 also works: README)
RUN apt-get update \
    && DEBIAN_FRONTEND=noninteractive apt-get install --yes --no-install-recommends unixodbc tdsodbc \
    && rm -rf /var/lib/apt/lists/* \
    && odbcinst -q -d -n FreeTDS

# dependencies first (cached while only the code changes): exactly the versions of uv.lock, into a
# venv that reuses the base's packages
COPY pyproject.toml uv.lock README.md ./
RUN python3 -m venv --system-site-packages /opt/venv \
    && pip install --no-cache-dir "uv==0.13.9" \
    && uv export --locked --no-dev --no-emit-project --no-hashes --format requirements-txt -o /tmp/locked.txt \
    && uv pip install --python /opt/venv/bin/python --no-cache -r /tmp/locked.txt \
    && pip uninstall --yes uv && rm /tmp/locked.txt

COPY flows ./flows
COPY blocks ./blocks
COPY deployments ./deployments
RUN pip install --no-cache-dir --no-deps . \
    && useradd --create-home --uid 10001 montrg
USER montrg
