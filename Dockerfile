# syntax=docker/dockerfile:1
# Three images from one file (docker-compose.yml builds each with `target:`):
#   worker     CUDA PyTorch + this repository (`pip install -e .`): runs the sweep driver.
#   mlflow     the official MLflow server image + psycopg, for its PostgreSQL backend store.
#   dashboard  optuna-dashboard on the same PostgreSQL storage (compose profile "dashboard").
# The MLflow server is pinned to the client's minor version (pyproject.toml: mlflow 3.17.x),
# so the server's schema migrations and REST API match what the workers speak.

ARG PYTORCH_IMAGE=pytorch/pytorch:2.7.1-cuda12.6-cudnn9-runtime
ARG MLFLOW_VERSION=3.17.2

# --- mlflow -------------------------------------------------------------------------------------
# Why not the worker image: it is several GB of CUDA and torch that a server never uses. Why not
# a runtime `pip install psycopg`: the server must start on machines without internet access.
FROM ghcr.io/mlflow/mlflow:v${MLFLOW_VERSION} AS mlflow
RUN pip install --no-cache-dir "psycopg[binary]>=3.1,<4"
ENV MLFLOW_DISABLE_TELEMETRY=true \
    DO_NOT_TRACK=true \
    MLFLOW_SERVER_ENABLE_JOB_EXECUTION=false
EXPOSE 5000

# --- dashboard ----------------------------------------------------------------------------------
FROM python:3.12-slim AS dashboard
RUN pip install --no-cache-dir "optuna-dashboard>=0.21,<1" "optuna>=4.9,<6" \
        "sqlalchemy>=2,<3" "psycopg[binary]>=3.1,<4" \
    && useradd --create-home dashboard
USER dashboard
EXPOSE 8080

# --- worker -------------------------------------------------------------------------------------
# Any CUDA PyTorch image whose torch satisfies pyproject.toml works; the version the project is
# tested with is the Makefile's TORCH_SPEC. pip keeps the image's torch (it satisfies the
# requirement), so the CUDA build is never replaced by a download.
FROM ${PYTORCH_IMAGE} AS worker
ARG GIT_COMMIT=""
ENV PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    MSPE_HOME=/data/mspe \
    MSPE_GIT_COMMIT=${GIT_COMMIT} \
    MLFLOW_DISABLE_TELEMETRY=true \
    DO_NOT_TRACK=true
WORKDIR /opt/mspe-sweep
# Dependencies first (a layer that survives code changes): install against a stub package.
# molsets (MOSES) only provides dataset=zinc_moses's data file: --no-deps, as in the Makefile.
COPY pyproject.toml README.md* ./
RUN mkdir mspe_sweep && touch mspe_sweep/__init__.py \
    && pip install -e . \
    && pip install --no-deps molsets==0.3.1 \
    && rm -rf mspe_sweep
# The repository itself: configs/ and studies/ must sit next to the code (config.REPO_ROOT).
COPY . .
RUN pip install --no-deps -e . \
    && python -c "import mspe_sweep.run, torch; print('torch', torch.__version__)" \
    && useradd --create-home mspe \
    && mkdir -p /data/mspe && chown mspe /data/mspe
# A fresh named volume mounted on /data/mspe takes this directory's owner, so `mspe` can write.
USER mspe
VOLUME ["/data/mspe"]
CMD ["python", "-m", "mspe_sweep.run", "--help"]
