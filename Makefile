# Two commands on a fresh machine: `make run` and `make test`.
PYTHON ?= python3.11
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: run test test-fast lint bench system-deps clean

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	@touch $(STAMP)

## run: the whole pipeline locally (moto server, queues and table, a worker, the API shim)
run: $(STAMP)
	$(BIN)/python scripts/run_local.py

## system-deps: Debian packages the browser and container tests need (as root)
system-deps:
	bash scripts/system-deps.sh

## test: every test; installs what it needs and starts its own servers
test: $(STAMP) system-deps
	$(BIN)/ruff check .
	$(BIN)/python -m pytest -ra

## test-fast: unit tests only (moto in process)
test-fast: $(STAMP)
	$(BIN)/python -m pytest -ra -m "not integration and not fault and not browser and not container"

lint: $(STAMP)
	$(BIN)/ruff check .

## bench: benchmarks, printing ratios against a baseline measured in the same run
bench: $(STAMP)
	$(BIN)/python -m bench

clean:
	rm -rf $(VENV) test-output bench/results .pytest_cache .ruff_cache
