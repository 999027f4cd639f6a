# Everything a newcomer needs: `make up` runs the system, `make test` runs every test.
# Both create .venv and install the project on first use; later runs reinstall only
# when pyproject.toml changed.

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: install up demo test lint fmt schema bench chaos clean

install: $(STAMP)

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	@touch $(STAMP)

up: install
	$(BIN)/carveout up

demo: install
	$(BIN)/carveout demo

# Two workers, each taking whole test files: most of the suite waits on real brokers,
# services and browsers, so two files at a time take about half as long.
TEST_WORKERS ?= 2

test: install
	$(BIN)/python -m pytest -n $(TEST_WORKERS) --dist loadfile

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

fmt: install
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

schema: install
	$(BIN)/python -m carveout_contracts.schema contracts/schema

bench: install
	$(BIN)/python -m bench

# Randomised faults (>= 100) on `carveout up --replicas 2` over PostgreSQL, then exact
# counts and digests; CHAOS_ARGS passes options (--seed N, --faults N, --json).
chaos: install
	$(BIN)/python -m tests.chaos $(CHAOS_ARGS)

clean:
	rm -rf $(VENV) var .pytest_cache .mypy_cache .ruff_cache
	find . -name __pycache__ -type d -prune -exec rm -rf {} +
