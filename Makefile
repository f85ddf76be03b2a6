# Two commands on a fresh machine: `make run` and `make test`.
PYTHON ?= python3.11
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

# Locked dependencies (pinned, with hashes): test.lock is what this Makefile installs,
# runtime.lock (the same pins, runtime part only) is what docker/Dockerfile installs.
LOCKS  := requirements-runtime.lock requirements.lock

.PHONY: run test test-fast test-long lint bench system-deps clean lock

$(STAMP): $(LOCKS) pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet --require-hashes -r requirements.lock
	$(BIN)/python -m pip install --quiet --no-deps -e .
	@touch $(STAMP)

# uv resolves the locks; it lives in a throwaway venv of its own, never in $(VENV).
UV_VENV    ?= .run/uv
UV_VERSION ?= 0.13.9
UV         := $(UV_VENV)/bin/uv
UV_COMPILE  = $(UV) pip compile --quiet --python-version 3.11 --generate-hashes \
	--custom-compile-command 'make lock' $(if $(UPGRADE),--upgrade) pyproject.toml
# Comment lines put before uv's own header (its "make lock" line) in each lock.
TEST_LOCK_HEADER    := '\# pyproject.toml: [project].dependencies plus the test extra, pinned with' \
	'\# hashes for Python 3.11. `make` installs it with pip install --require-hashes -r.'
RUNTIME_LOCK_HEADER := '\# pyproject.toml: [project].dependencies, pinned with hashes for Python 3.11' \
	'\# at the versions of requirements.lock. docker/Dockerfile installs it.'
LOCK_EDIT_NOTE      := '\# Do not edit: change pyproject.toml, then run `make lock` (see the Makefile).'
# $(call lock_header,FILE,LINES): prepend quoted comment LINES to a lock uv just wrote.
lock_header = { printf '%s\n' $(2) $(LOCK_EDIT_NOTE); cat $(1); } >$(1).tmp && mv $(1).tmp $(1)

## lock: re-resolve requirements*.lock after editing pyproject.toml; pins that still fit
##       are kept, `make lock UPGRADE=1` moves everything to the newest allowed versions
lock:
	@test -x $(UV) || { $(PYTHON) -m venv $(UV_VENV) \
		&& $(UV_VENV)/bin/python -m pip install --quiet 'uv==$(UV_VERSION)'; }
	$(UV_COMPILE) --extra test -o requirements.lock
	$(UV_COMPILE) -c requirements.lock -o requirements-runtime.lock
	@$(call lock_header,requirements.lock,$(TEST_LOCK_HEADER))
	@$(call lock_header,requirements-runtime.lock,$(RUNTIME_LOCK_HEADER))

## run: the whole pipeline locally (moto server, queues and table, a worker, the API shim)
run: $(STAMP)
	$(BIN)/python scripts/run_local.py

## system-deps: Debian packages the browser and container tests need (as root)
system-deps:
	bash scripts/system-deps.sh

## test: every test; installs what it needs and starts its own servers
test: $(STAMP) system-deps
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/python -m pytest -ra

## test-fast: unit tests only (moto in process)
test-fast: $(STAMP)
	$(BIN)/python -m pytest -ra -m "not integration and not fault and not browser and not container"

## test-long: the model-based tests of the job record with a much larger budget (minutes)
test-long: $(STAMP)
	TEST_MODEL_EXAMPLES=1500 $(BIN)/python -m pytest -ra tests/test_record_model.py --timeout=3600

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

## bench: benchmarks, printing ratios against a baseline measured in the same run
bench: $(STAMP)
	$(BIN)/python -m bench

clean:
	rm -rf $(VENV) test-output bench/results/latest.* bench/results/bench-* .pytest_cache .ruff_cache
