# irbot container image:  docker build -t irbot .   (README, "Deployment")
#
# Two stages. `build` installs exactly what uv.lock pins (runtime dependencies, then irbot
# itself as a wheel, not an editable link to the sources) into /opt/venv. The final stage
# is the same slim Python with that venv, the seed playbooks and a non-root user: no
# compiler, no pip or uv, no package caches. Every runtime dependency ships a manylinux
# wheel, so nothing is compiled in either stage.
#
# The base is an exact Python patch release on Debian 12. To pin it by digest as well:
#   docker buildx imagetools inspect python:3.11.15-slim-bookworm   (the index digest)
#   docker build --build-arg PYTHON_IMAGE=python:3.11.15-slim-bookworm@sha256:<digest> .
ARG PYTHON_IMAGE=python:3.11.15-slim-bookworm
# Same uv as the Makefile's UV_VERSION (tests/test_dockerfile.py holds them together).
ARG UV_VERSION=0.13.8

FROM ghcr.io/astral-sh/uv:${UV_VERSION} AS uv

FROM ${PYTHON_IMAGE} AS build
COPY --from=uv /uv /usr/local/bin/uv
ENV UV_COMPILE_BYTECODE=1 \
    UV_LINK_MODE=copy \
    UV_PYTHON_DOWNLOADS=never \
    UV_PYTHON=/usr/local/bin/python3.11 \
    UV_PROJECT_ENVIRONMENT=/opt/venv
WORKDIR /src
# Dependencies first: this layer survives edits to irbot's own code.
COPY pyproject.toml uv.lock ./
RUN --mount=type=cache,target=/root/.cache/uv \
    uv sync --frozen --no-dev --no-editable --no-install-project
COPY README.md ./
COPY bot ./bot
RUN --mount=type=cache,target=/root/.cache/uv \
    uv sync --frozen --no-dev --no-editable

FROM ${PYTHON_IMAGE} AS runtime
# pip, setuptools and wheel come with the base image; irbot needs none of them at run time.
RUN python -m pip uninstall --yes --no-cache-dir pip setuptools wheel \
    && groupadd --gid 10001 irbot \
    && useradd --uid 10001 --gid 10001 --home-dir /app --no-create-home \
        --shell /usr/sbin/nologin irbot \
    && mkdir -p /data /etc/irbot \
    && chown 10001:10001 /data
# Owned by root and read-only to irbot: the process cannot change its own code.
COPY --from=build /opt/venv /opt/venv
COPY playbooks /app/playbooks
COPY irbot.example.yaml /app/irbot.example.yaml
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    IRBOT_PLAYBOOKS=/app/playbooks \
    IRBOT_CONFIG=/etc/irbot/irbot.yaml \
    IRBOT_DATA_DIR=/data
WORKDIR /app
USER 10001:10001
# SQLite databases (the default store) live here: mount a volume to keep them.
VOLUME ["/data"]
EXPOSE 3000
# Liveness of `irbot serve`. Proxies are bypassed (an HTTP_PROXY meant for Slack must not
# catch 127.0.0.1); set IRBOT_HEALTHCHECK_URL when serving on another port.
HEALTHCHECK --interval=30s --timeout=5s --start-period=60s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request as u; u.build_opener(u.ProxyHandler({})).open(os.environ.get('IRBOT_HEALTHCHECK_URL', 'http://127.0.0.1:3000/healthz'), timeout=4)"]
ENTRYPOINT ["irbot"]
CMD ["serve", "--host", "0.0.0.0"]
