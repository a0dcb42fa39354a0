# syntax=docker/dockerfile:1
#
# Thaw image: one image for the API (`thaw api`, the default command) and the
# training workers (`thaw worker`). torch's PyPI Linux wheels bundle CUDA, so
# the image needs no CUDA base; the host needs the NVIDIA driver and the
# NVIDIA Container Toolkit for the worker's GPU reservation.

ARG PYTHON_IMAGE=python:3.11.13-slim-bookworm

# --- builder: resolve and install every wheel into a virtualenv -------------
FROM ${PYTHON_IMAGE} AS builder

ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    VIRTUAL_ENV=/opt/venv \
    PATH="/opt/venv/bin:${PATH}"

WORKDIR /src
RUN python -m venv /opt/venv

# Dependencies first, in their own layer: torch and its CUDA libraries are
# several GB, and this layer is rebuilt only when pyproject.toml changes.
COPY pyproject.toml README.md ./
RUN python -c "import tomllib; print('\n'.join(tomllib.load(open('pyproject.toml', 'rb'))['project']['dependencies']))" > /tmp/requirements.txt \
    && pip install --no-cache-dir -r /tmp/requirements.txt \
    && rm /tmp/requirements.txt

COPY thaw ./thaw
COPY service ./service
COPY worker ./worker
# pip compiles bytecode at install time; it stays, because the runtime user
# cannot write /opt/venv and would otherwise recompile torch on every start.
RUN pip install --no-cache-dir --no-deps .

# --- runtime: the virtualenv and a non-root user, nothing else ----------------
FROM ${PYTHON_IMAGE} AS runtime

# HF_HOME and TORCH_HOME sit on the data volume, so downloaded weights survive
# container restarts and are shared by the API (meta-device validation) and
# the workers.
ENV PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PIP_NO_CACHE_DIR=1 \
    VIRTUAL_ENV=/opt/venv \
    PATH="/opt/venv/bin:${PATH}" \
    THAW_DATA_DIR=/data \
    THAW_MODELS_DIR=/models \
    THAW_DATASETS_DIR=/datasets \
    XDG_CACHE_HOME=/data/cache \
    HF_HOME=/data/cache/huggingface \
    TORCH_HOME=/data/cache/torch

# /data is created owned by the runtime user: a new named volume mounted there
# starts as a copy of it, so the volume is writable without running as root.
RUN groupadd --system --gid 10001 thaw \
    && useradd --system --uid 10001 --gid thaw --create-home --home-dir /home/thaw \
        --shell /usr/sbin/nologin thaw \
    && mkdir -p /data/cache /models /datasets \
    && chown -R thaw:thaw /data

COPY --from=builder /opt/venv /opt/venv

USER 10001:10001
WORKDIR /home/thaw

EXPOSE 8000

# Liveness of the API (slim has no curl). The worker serves no HTTP and
# overrides this check in docker-compose.yml.
HEALTHCHECK --interval=30s --timeout=5s --start-period=60s --retries=3 \
    CMD ["python", "-c", "import sys, urllib.request; sys.exit(0 if urllib.request.urlopen('http://127.0.0.1:8000/healthz', timeout=4).status == 200 else 1)"]

CMD ["thaw", "api", "--host", "0.0.0.0", "--port", "8000"]
