# tracklab-sysmon — `make help` lists the targets.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
HOST ?= 127.0.0.1
PORT ?= 8080
PYTEST_ARGS ?=
# Debian packages the tests drive for real, as PACKAGE:COMMAND.
SYSTEM_DEPS ?= chromium:chromium prometheus:promtool gcc:cc procps:free util-linux:setpriv

.DEFAULT_GOAL := help
.PHONY: help run test test-slow test-native-sanitize lint bench system-deps clean

help: ## List the targets
	@grep -hE '^[a-zA-Z_-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' -v host='$(HOST)' -v port='$(PORT)' \
		'{gsub(/\$$\(HOST\)/, host, $$2); gsub(/\$$\(PORT\)/, port, $$2); printf "  make %-22s %s\n", $$1, $$2}'

$(VENV)/bin/python:
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip

# `make run` needs no system package: the C helper builds when a compiler is there, else the
# Python twin serves. The test install comes after system-deps (which brings the compiler) and
# reinstalls, so the suite, which requires the C helper, never sees a build made without one.
$(VENV)/.installed: $(VENV)/bin/python pyproject.toml $(wildcard setup.py native/*)
	$(PY) -m pip install -q -e .
	touch $@

$(VENV)/.installed-test: $(VENV)/.installed | system-deps
	$(PY) -m pip install -q -e '.[test]'
	touch $@

run: $(VENV)/.installed ## Install into .venv and serve on $(HOST):$(PORT) (make run PORT=9090 HOST=...)
	@echo "tracklab-sysmon: dashboard at http://$(HOST):$(PORT)/ (JSON at /api/system/metrics)"
	$(VENV)/bin/tracklab-sysmon serve --host $(HOST) --rest-api-port $(PORT)

system-deps: ## Install the Debian packages the tests use (when root)
	scripts/ensure-system-deps.sh $(SYSTEM_DEPS)

# With a C compiler here the C helper must have built: require it, so a broken build fails.
NATIVE_MODE = $${TRACKLAB_SYSMON_NATIVE:-$$(command -v $${CC:-cc} >/dev/null && echo require || echo auto)}
SANITIZE_FLAGS = -std=gnu11 -g -O1 -fno-omit-frame-pointer -fsanitize=address,undefined -fno-sanitize-recover=all

test: $(VENV)/.installed-test system-deps ## Install everything and run the fast test suite
	TRACKLAB_SYSMON_NATIVE=$(NATIVE_MODE) $(PY) -m pytest $(PYTEST_ARGS)

test-slow: $(VENV)/.installed-test system-deps ## Run the slow tier only
	TRACKLAB_SYSMON_NATIVE=$(NATIVE_MODE) $(PY) -m pytest -m slow $(PYTEST_ARGS)

test-native-sanitize: system-deps ## Run the C helper's own tests (counters, process walk, fabric counters, fdinfo, DRM fds, InfiniBand ports, Intel engine meter) under ASan and UBSan on every fixture tree
	@mkdir -p build
	$${CC:-cc} $(SANITIZE_FLAGS) -Wall -Wextra -Inative native/sysmon.c native/devices.c native/test_sysmon.c -lm -o build/test_sysmon-sanitize
	build/test_sysmon-sanitize tests/fixtures/*/proc /proc
	$${CC:-cc} $(SANITIZE_FLAGS) -Wall -Wextra -Inative native/procwalk.c native/test_procwalk.c -o build/test_procwalk-sanitize
	build/test_procwalk-sanitize tests/fixtures/*/proc /proc
	$${CC:-cc} $(SANITIZE_FLAGS) -Wall -Wextra -Inative native/fabric.c native/test_fabric.c -lm -o build/test_fabric-sanitize
	build/test_fabric-sanitize
	$${CC:-cc} $(SANITIZE_FLAGS) -Wall -Wextra -Inative native/fdinfo.c native/test_fdinfo.c -o build/test_fdinfo-sanitize
	build/test_fdinfo-sanitize tests/fixtures/*/proc/*/fdinfo/*
	$${CC:-cc} $(SANITIZE_FLAGS) -Wall -Wextra -Inative native/drmfds.c native/test_drmfds.c -o build/test_drmfds-sanitize
	build/test_drmfds-sanitize tests/fixtures/*/proc /proc
	$${CC:-cc} $(SANITIZE_FLAGS) -Wall -Wextra -Inative native/ibports.c native/test_ibports.c -lm -o build/test_ibports-sanitize
	build/test_ibports-sanitize tests/fixtures/*/sys/class/infiniband/*/ports/*
	$${CC:-cc} $(SANITIZE_FLAGS) -Wall -Wextra -Inative native/sysints.c native/test_sysints.c -o build/test_sysints-sanitize
	build/test_sysints-sanitize $$(find tests/fixtures/*/sys -path '*drm*' -type f) tests/fixtures/*/proc/*/fdinfo/*
	$${CC:-cc} $(SANITIZE_FLAGS) -Wall -Wextra -Inative native/sysints.c native/fdinfo.c native/engines.c native/test_engines.c -o build/test_engines-sanitize
	build/test_engines-sanitize

$(VENV)/.installed-lint: $(VENV)/.installed
	$(PY) -m pip install -q -e '.[lint,fastapi]'  # mypy reads the relay against FastAPI's own types
	touch $@

lint: $(VENV)/.installed-lint ## Ruff (style, imports, bug patterns) and mypy --strict on the package
	$(VENV)/bin/ruff check src tests benchmarks examples scripts
	$(VENV)/bin/mypy

bench: $(VENV)/.installed-test ## Run every benchmark in benchmarks/ (see docs/performance.md)
	@set -e; for b in benchmarks/bench_*.py; do echo "== $$b"; $(PY) $$b; done

clean: ## Remove the venv and build outputs
	rm -rf $(VENV) build dist src/*.egg-info .pytest_cache .hypothesis
