# Thaw image: one image for the API (`thaw api`, the default command) and the
# training workers (`thaw worker`). torch's PyPI Linux wheels bundle CUDA, so
# the image needs no CUDA base; a GPU host needs the NVIDIA driver the bundled
# CUDA asks for (README.md, "Deploy on a GPU host") and the NVIDIA Container
# Toolkit.
#
# No `# syntax=` line: BuildKit would fetch that frontend from Docker Hub before
# reading FROM, and an offline host could not build at all.
#
# PYTHON_IMAGE: any Debian-based image with python3.11 and venv, e.g. a site
# mirror's copy of the default or one built by deploy/base-image.
ARG PYTHON_IMAGE=python:3.11.13-slim-bookworm

# --- deps: every dependency in a virtualenv, from pyproject.toml alone --------
FROM ${PYTHON_IMAGE} AS deps

ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    VIRTUAL_ENV=/opt/venv \
    PATH="/opt/venv/bin:${PATH}"

WORKDIR /src
RUN python -m venv /opt/venv

# Dependencies first, in their own layer, from pyproject.toml alone: torch and
# its CUDA libraries are most of the image and of the build time, and only a
# change to pyproject.toml reinstalls them (not one to README.md or the code).
# triton (1 GB) serves torch.compile only, which Thaw does not use.
COPY pyproject.toml ./
RUN python -c "import tomllib; print('\n'.join(tomllib.load(open('pyproject.toml', 'rb'))['project']['dependencies']))" > /tmp/requirements.txt \
    && pip install --no-cache-dir -r /tmp/requirements.txt \
    && pip uninstall --yes triton \
    && rm /tmp/requirements.txt

# --- app: Thaw itself, in a folder of its own ----------------------------------
# Apart from the virtualenv, so a change to the code (or README.md, which
# pyproject.toml names as the long description) adds a layer of a few MB to the
# image instead of a new copy of the virtualenv.
FROM deps AS app
COPY README.md ./
COPY thaw ./thaw
COPY service ./service
COPY worker ./worker
# pip compiles bytecode at install time; it stays, because the runtime user
# cannot write /opt and would otherwise recompile on every start.
RUN pip install --no-cache-dir --no-deps --target /opt/app .

# --- runtime: the virtualenv, the app and a non-root user, nothing else -------
FROM ${PYTHON_IMAGE} AS runtime

# The user that owns /data. A host folder bound there must be writable by it:
# chown it to APP_UID:APP_GID, or build with the ids that own it already.
ARG APP_UID=10001
ARG APP_GID=10001

# HF_HOME and TORCH_HOME sit on the data volume, so downloaded weights survive
# container restarts and are shared by the API (meta-device validation) and
# the workers.
ENV PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PIP_NO_CACHE_DIR=1 \
    VIRTUAL_ENV=/opt/venv \
    PATH="/opt/app/bin:/opt/venv/bin:${PATH}" \
    PYTHONPATH=/opt/app \
    THAW_DATA_DIR=/data \
    THAW_MODELS_DIR=/models \
    THAW_DATASETS_DIR=/datasets \
    XDG_CACHE_HOME=/data/cache \
    HF_HOME=/data/cache/huggingface \
    TORCH_HOME=/data/cache/torch

# /data is created owned by the runtime user: a new named volume mounted there
# starts as a copy of it, so the volume is writable without running as root.
RUN groupadd --system --gid "${APP_GID}" thaw \
    && useradd --system --uid "${APP_UID}" --gid thaw --create-home --home-dir /home/thaw \
        --shell /usr/sbin/nologin thaw \
    && mkdir -p /data/cache /models /datasets \
    && chown -R thaw:thaw /data

COPY --from=deps /opt/venv /opt/venv
COPY --from=app /opt/app /opt/app

USER ${APP_UID}:${APP_GID}
WORKDIR /home/thaw

EXPOSE 8000

# Liveness of the API (the base has no curl). A worker serves no HTTP: its
# container runs `python -m worker.healthcheck` instead (docker-compose.yml,
# and README.md's `docker run` recipe).
HEALTHCHECK --interval=30s --timeout=5s --start-period=60s --retries=3 \
    CMD ["python", "-c", "import sys, urllib.request; sys.exit(0 if urllib.request.urlopen('http://127.0.0.1:8000/healthz', timeout=4).status == 200 else 1)"]

CMD ["thaw", "api", "--host", "0.0.0.0", "--port", "8000"]
