# syntax=docker/dockerfile:1
#
# maxtune images, one Dockerfile, two targets:
#   docker build --target operator -t maxtune-operator:0.1.0 .   # webhook + labeller: no torch
#   docker build --target agent    -t maxtune-agent:0.1.0 .      # GPU measurements: CUDA torch
# or, without a Docker engine or a registry, `make image`: buildah builds both targets from a
# Debian bookworm base made by mmdebstrap, passed in as PYTHON_IMAGE (imagebuild/).
#
# Both install the wheel built in the first stage with the pins of constraints.txt, into a venv
# at /opt/maxtune, run as the numeric non-root user 65532 and start with `maxtune`. A base given
# as PYTHON_IMAGE needs what the RUN steps call: `python` 3.11 with venv and pip, groupadd and
# useradd, and (agent) apt-get.
# tests/image/ runs these very pip commands (read from this file) in a clean venv.
#
# The agent's base is the same slim Python as the operator's, not an nvidia/cuda image: torch's
# PyPI wheels bring their own CUDA libraries (the nvidia-* and cuda-toolkit wheels pinned in
# constraints.txt), and the NVIDIA container toolkit injects the driver (libcuda, libnvidia-ml)
# into any image when NVIDIA_VISIBLE_DEVICES is set. A CUDA base would ship a second copy of
# the CUDA runtime and a different Python than the one the pins were resolved with (3.11).
# Needs a driver for CUDA 13 (>= 580) on the nodes.

ARG PYTHON_IMAGE=python:3.11-slim-bookworm

# ---------------------------------------------------------------- builder: the maxtune wheel
FROM ${PYTHON_IMAGE} AS builder
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
COPY pyproject.toml README.md ./
COPY core ./core
COPY agent ./agent
COPY operator ./operator
RUN python -m pip wheel --no-deps --wheel-dir /dist .

# ---------------------------------------------------------------- operator: no torch, no triton
FROM ${PYTHON_IMAGE} AS operator
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 \
    PATH=/opt/maxtune/bin:$PATH
COPY constraints.txt /tmp/constraints.txt
RUN --mount=type=bind,from=builder,source=/dist,target=/dist \
    python -m venv /opt/maxtune \
    && /opt/maxtune/bin/python -m pip install --constraint /tmp/constraints.txt "$(ls /dist/maxtune-*.whl)[operator]" \
    && rm /tmp/constraints.txt
# The build fails here if torch or triton slipped in through a dependency.
RUN /opt/maxtune/bin/python -c "import importlib.util as u, sys; found = [m for m in ('torch', 'triton') if u.find_spec(m)]; sys.exit(f'operator image must not contain {found}' if found else 0)" \
    && maxtune --help > /dev/null && maxtune operator --help > /dev/null
RUN groupadd --gid 65532 maxtune \
    && useradd --uid 65532 --gid 65532 --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin maxtune
USER 65532:65532
ENTRYPOINT ["maxtune"]
CMD ["operator", "--help"]

# ---------------------------------------------------------------- agent: CUDA torch and triton
FROM ${PYTHON_IMAGE} AS agent
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 \
    PATH=/opt/maxtune/bin:$PATH \
    NVIDIA_VISIBLE_DEVICES=all NVIDIA_DRIVER_CAPABILITIES=compute,utility
# Triton compiles its small C launcher at run time: it needs a C compiler and libc headers.
RUN apt-get update \
    && apt-get install -y --no-install-recommends gcc libc6-dev \
    && rm -rf /var/lib/apt/lists/*
COPY constraints.txt /tmp/constraints.txt
RUN --mount=type=bind,from=builder,source=/dist,target=/dist \
    python -m venv /opt/maxtune \
    && /opt/maxtune/bin/python -m pip install --constraint /tmp/constraints.txt "$(ls /dist/maxtune-*.whl)[agent]" \
    && rm /tmp/constraints.txt
RUN /opt/maxtune/bin/python -c "import torch, triton, pynvml" && maxtune --help > /dev/null
RUN groupadd --gid 65532 maxtune \
    && useradd --uid 65532 --gid 65532 --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin maxtune
USER 65532:65532
ENTRYPOINT ["maxtune"]
CMD ["agent", "--help"]
