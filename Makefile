# ION Mentoring: `make run` starts the local server, `make test` runs every check.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp
PORT   ?= 8080

.PHONY: setup run test lint typecheck unit fmt bench docs clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[gcp,gemini,dev]'
	touch $(STAMP)

setup: $(STAMP)

run: setup
	$(BIN)/ion serve --port $(PORT)

lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: setup
	$(BIN)/mypy shared

unit: setup
	$(BIN)/pytest

test: lint typecheck unit

fmt: setup
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

docs: setup
	$(BIN)/python scripts/sync_readme.py

bench: setup
	$(BIN)/python bench/route_bench.py
	$(BIN)/python bench/chat_bench.py

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache dist build
