# The project's one image: Ray head and workers (Serve app, dashboard, learning-loop scheduler)
# and the Streamlit website all run from it; compose.yaml and cluster.yaml pick the command.
#
#   docker build -t twotower:latest .
#
# Torch from the default index brings CUDA libraries; to build a CPU-only image point
# PIP_EXTRA_INDEX_URL at a CPU wheel index: --build-arg PIP_EXTRA_INDEX_URL=<url>.
FROM python:3.11-slim-bookworm

ARG PIP_EXTRA_INDEX_URL=""
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    RAY_USAGE_STATS_ENABLED=0

# curl: health checks; procps: `ray stop`/ps inside the container; tini: signal handling.
RUN apt-get update \
 && apt-get install -y --no-install-recommends curl procps tini \
 && rm -rf /var/lib/apt/lists/*

RUN useradd --create-home --uid 1000 --shell /bin/bash twotower
WORKDIR /app

# Dependencies first (cached while only the code changes), then the code itself. The teacher
# extra: `twotower train --corpus` distils from it (docs/corpora.md).
COPY pyproject.toml README.md ./
RUN mkdir -p cluster deployments training ui monitoring \
 && touch cluster/__init__.py deployments/__init__.py training/__init__.py ui/__init__.py \
    monitoring/__init__.py \
 && pip install ${PIP_EXTRA_INDEX_URL:+--extra-index-url "$PIP_EXTRA_INDEX_URL"} ".[teacher]" \
 && pip uninstall -y twotower-search
COPY --chown=twotower:twotower . .
RUN pip install --no-deps -e . \
 && mkdir -p /data && chown twotower:twotower /data

USER twotower
# Production: every secret comes from the environment (see .env.example); state under /data.
# Ray from this image wants its token (RAY_AUTH_TOKEN) from every node and driver: a Ray
# started without one refuses to start rather than run open.
ENV TWOTOWER_MODE=production \
    TWOTOWER_STATE_DIR=/data \
    TWOTOWER_HOST=0.0.0.0 \
    RAY_AUTH_MODE=token
VOLUME ["/data"]
EXPOSE 8000 8265 8501 8080 6379

ENTRYPOINT ["/usr/bin/tini", "--"]
CMD ["twotower", "--help"]
