# registry-refcount: the two commands are `make run` and `make test`.
SHELL := /bin/bash
VENV27 := .venv27
VENV3 := .venv3
REGISTRY_HOST ?= 127.0.0.1
REGISTRY_PORT ?= 5000
STORAGE_PATH ?= $(CURDIR)/var/registry
GUNICORN_WORKERS ?= 4
SETTINGS_FLAVOR ?= local
PYTEST_ARGS ?=
ARGS ?= status

.PHONY: setup run refcount test test27 test3 stress bench dist clean

setup:
	@bash scripts/setup.sh

# The environment `make run` serves with, and `make refcount` works in.
RUN_ENV = export PATH="$(CURDIR)/$(VENV27)/bin:$$PATH" \
	  DOCKER_REGISTRY_CONFIG="$(CURDIR)/config_sample.yml" \
	  SETTINGS_FLAVOR="$(SETTINGS_FLAVOR)" \
	  REGISTRY_HOST="$(REGISTRY_HOST)" REGISTRY_PORT="$(REGISTRY_PORT)" \
	  STORAGE_PATH="$(STORAGE_PATH)" GUNICORN_WORKERS="$(GUNICORN_WORKERS)"

run: setup
	@mkdir -p "$(STORAGE_PATH)"
	@echo "registry-refcount: serving docker-registry 0.9.1 with the extension on http://$(REGISTRY_HOST):$(REGISTRY_PORT)/ (flavor $(SETTINGS_FLAVOR), storage $(STORAGE_PATH), $(GUNICORN_WORKERS) workers)"
	@$(RUN_ENV); exec $(VENV27)/bin/docker-registry

# The operator's command on the registry `make run` serves (same config,
# flavor and storage), e.g. `make refcount ARGS="gc --dry-run"`; setup's
# messages go to stderr, so `ARGS="--json status"` prints JSON alone.
# GNU make exits 2 whenever a recipe fails, whatever its code: the
# command's own code is said on stderr (scripts and cron call
# .venv27/bin/registry-refcount, whose code is its own).
refcount:
	@bash scripts/setup.sh >&2
	@$(RUN_ENV); $(VENV27)/bin/registry-refcount $(ARGS); code=$$?; \
	  if [ $$code -ne 0 ]; then echo "make refcount: registry-refcount" \
	    "exited with $$code (make exits 2 on any failure)" >&2; fi; \
	  exit $$code

test: setup
	@bash scripts/test.sh $(PYTEST_ARGS)

stress: setup
	@REFCOUNT_STRESS=1 $(VENV27)/bin/python -m pytest -q \
	  tests/registry/test_concurrency.py tests/registry/test_fuzz.py \
	  tests/storage/test_properties.py \
	  tests/s3/test_clocks.py tests/s3/test_lock_faults.py \
	  tests/registry/test_lock_faults.py tests/s3/test_stalls.py \
	  tests/model $(PYTEST_ARGS)

bench: setup
	@bash scripts/bench.sh

# An sdist and a wheel of this package in dist/, to `pip install` into an
# existing registry's environment (README, "Installing into an existing
# registry").
dist: setup
	@bash scripts/dist.sh

clean:
	rm -rf $(VENV27) $(VENV3) .venv-tools .venv-moto .venv-bench var dist .pytest_cache
