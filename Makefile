# quartet: `make repro` runs the whole pipeline, `make test` the test suite. Both set up
# everything first (a .venv with exact pins, Debian data packages when run as root).
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(CURDIR)/$(VENV)/bin
# Debian packages the families read their data from: the translator's EN-ES Bible verses (SWORD
# modules read with diatheke) and the generative family's Fashion-MNIST.
APT_PACKAGES ?= diatheke sword-text-web sword-text-sparv dataset-fashion-mnist
# What `make cluster-up` (and its test) run the hosts with: PostgreSQL for MLflow, iproute2 for the
# network namespaces.
CLUSTER_APT_PACKAGES ?= postgresql iproute2
# What the browser tests (demo page, MLflow UI) drive: Debian's Chromium, through Playwright.
BROWSER_APT_PACKAGES ?= chromium chromium-driver

export PATH := $(BIN):$(PATH)
export RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER := 0
export RAY_AUTH_MODE := disabled
export RAY_TRAIN_HEALTH_CHECK_INTERVAL_S := 0.25
export RAY_USAGE_STATS_ENABLED := 0
export MLFLOW_DISABLE_TELEMETRY := true
export DVC_NO_ANALYTICS := 1
export PYTHONUNBUFFERED := 1

.PHONY: help venv deps apt cluster-apt browser-apt status data repro test test-unit serve ui bench clean cluster-up cluster-down cluster-status

help:
	@echo "make repro   set up, then dvc repro (the whole pipeline on the default profile)"
	@echo "make test    set up, then run the test suite"
	@echo "make serve   serve the @champion models on http://127.0.0.1:8000 (demo page at /, API at /docs)"
	@echo "make ui      MLflow UI on http://127.0.0.1:5000"
	@echo "make status  what dvc repro would rerun, each task's champion, the served app's health"
	@echo "make bench   benchmarks -> BENCHMARKS.md"
	@echo "make cluster-up / cluster-status / cluster-down   a local Ray cluster of separate hosts (root)"

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

venv: $(BIN)/python

# Reinstall when the pins change; `pip install torch==2.13.0` takes the CPU wheel here.
$(VENV)/.deps: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[test]'
	touch $@

deps: $(VENV)/.deps apt

apt:
	@missing=""; for p in $(APT_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ]; then apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing; \
	  else echo "missing Debian packages:$$missing (run as root or: sudo apt-get install$$missing)"; fi; \
	fi

cluster-apt:
	@missing=""; for p in $(CLUSTER_APT_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ]; then apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing; \
	  else echo "missing Debian packages:$$missing (run as root or: sudo apt-get install$$missing)"; fi; \
	fi

# data/ is pinned by data.dvc; it is regenerated from its sources, checked against that md5 and
# pushed to the default DVC remote (the cluster's shared storage), where cluster jobs pull it.
browser-apt:
	@missing=""; for p in $(BROWSER_APT_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ]; then apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing; \
	  else echo "missing Debian packages:$$missing (run as root or: sudo apt-get install$$missing)"; fi; \
	fi

data: deps
	$(BIN)/quartet data

cluster-up: deps cluster-apt data
	$(BIN)/quartet cluster up

cluster-status: deps
	$(BIN)/quartet cluster status

cluster-down: deps
	$(BIN)/quartet cluster down

repro: data
	$(BIN)/quartet repro
	$(BIN)/dvc metrics show

test: deps cluster-apt browser-apt
	$(BIN)/python -m pytest -q -ra --durations=25

test-unit: deps
	$(BIN)/python -m pytest -q -ra tests/unit

serve: deps
	$(BIN)/quartet serve

ui: deps
	$(BIN)/quartet ui

status: deps
	$(BIN)/quartet status

bench: data
	$(BIN)/python -m bench.forecaster
	$(BIN)/python -m bench.translator
	$(BIN)/python -m bench.sequences
	$(BIN)/python -m bench.softmax
	$(BIN)/python -m bench.generative
	$(BIN)/python -m bench.generative --only ddpm
	$(BIN)/python -m bench.rl
	$(BIN)/python -m bench.rl --only lunar --lunar-agents ppo,a2c,reinforce_baseline,reinforce --seeds 1,2,3 --lunar-steps 737280 --out bench/results/rl_pg.json
	$(BIN)/python -m bench.atari
	$(BIN)/quartet repro
	$(BIN)/python -m bench.threads

clean:
	rm -rf prepared models tuning metrics plots registry ray_results mlruns
