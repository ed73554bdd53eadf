# maxtune developer entry points. `make test` is what CI runs (.ci/run).
SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.maxtune-$(shell cat pyproject.toml constraints.txt | sha256sum | cut -c1-16)

.PHONY: venv lint test unit bench demo crds tools clean-plane

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
# into .cache/ and reused while their versions stay the same; Debian's Prometheus
# (end-to-end test, demo) and redis-server (compile-cache tests), unpacked into
# .cache/ without root.
tools: venv
	$(BIN)/python -m maxtune.localplane build
	$(BIN)/python -m maxtune.demo fetch-prometheus
	$(BIN)/python -m maxtune.localplane fetch-redis

lint: venv
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

# Two workers, one module each at a time (module fixtures stay whole), each with a
# control plane of its own: the suite waits on servers more than it computes, so
# on 2 cores this halves its wall time (9.4 -> 5.2 min). TEST_WORKERS=0: one process.
TEST_WORKERS ?= 2
test: venv tools lint
	$(BIN)/python -m pytest -n $(TEST_WORKERS) --dist loadfile --durations=15

unit: venv
	$(BIN)/python -m pytest -m "not plane"

bench: venv tools
	$(BIN)/python -m benchmarks.run

demo: venv tools
	$(BIN)/maxtune demo

crds: venv
	$(BIN)/maxtune crds --write

# Stop a plane left running by `python -m maxtune.localplane up` and drop local state.
clean-plane:
	-$(BIN)/python -m maxtune.localplane down --name default
	rm -rf .run
