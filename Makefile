# maxtune developer entry points. `make test` is what CI runs (.ci/run).
SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.maxtune-$(shell cat pyproject.toml constraints.txt | sha256sum | cut -c1-16)

.PHONY: venv lint test unit bench demo crds docs tools image image-tools clean-plane

# The virtual environment holds everything: the package (editable), the
# operator and agent extras (torch is the PyPI CUDA build: pip's cache serves
# later runs) and the dev tools. Rebuilt only when pyproject or the pins move.
venv: $(STAMP)
$(STAMP): pyproject.toml constraints.txt
	@test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -c constraints.txt -e '.[operator,agent,dev]'
	@rm -f $(VENV)/.maxtune-* && touch $@

# Control-plane binaries (etcd, kube-*, kwok, helm), built from pinned Go modules
# into .cache/ and reused while their versions stay the same; helm-docs (the chart
# README) the same way; Debian's Prometheus (and promtool) for the end-to-end test,
# the alert tests and the demo, and redis-server (compile-cache tests), unpacked into
# .cache/ without root.
tools: venv
	$(BIN)/python -m maxtune_dev.localplane build
	$(BIN)/python -m maxtune_dev.docs build-helm-docs
	$(BIN)/python -m maxtune_dev.demo fetch-prometheus
	$(BIN)/python -m maxtune_dev.localplane fetch-redis

# buildah and mmdebstrap for the images: apt-get install, only when missing (needs root;
# kept out of `tools` so that the demo and the benchmarks do not need them).
image-tools:
	$(PY) -m imagebuild tools

# The Dockerfile's operator and agent targets, built with buildah (chroot isolation, vfs
# storage, no Docker engine) from a Debian bookworm base made by mmdebstrap, tagged
# localhost/maxtune-{operator,agent}:<version>. Reused while their inputs are unchanged
# (Dockerfile, pyproject, pins, sources): docs/decisions/0022-container-images.md.
image: image-tools
	$(PY) -m imagebuild build

lint: venv
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/lint-imports --no-cache

# Two workers, one module each at a time (module fixtures stay whole), each with a
# control plane of its own: the suite waits on servers more than it computes, so
# on 2 cores this halves its wall time (9.4 -> 5.2 min). TEST_WORKERS=0: one process.
TEST_WORKERS ?= 2
# MAXTUNE_REQUIRE_IMAGES=1: a machine that cannot build images fails the image tests
# instead of skipping them.
test: venv tools image lint
	MAXTUNE_REQUIRE_IMAGES=1 $(BIN)/python -m pytest -n $(TEST_WORKERS) --dist loadfile --durations=15

unit: venv
	$(BIN)/python -m pytest -m "not plane and not image"

bench: venv tools
	$(BIN)/python -m benchmarks.run

demo: venv tools
	$(BIN)/python -m maxtune_dev.demo run

crds: venv
	$(BIN)/maxtune crds --write

# docs/metrics.md (from the metric declarations) and the chart README (helm-docs).
docs: venv
	$(BIN)/python -m maxtune_dev.docs --write

# Stop a plane left running by `python -m maxtune_dev.localplane up` and drop local state.
clean-plane:
	-$(BIN)/python -m maxtune_dev.localplane down --name default
	rm -rf .run
