# ION Mentoring: `make run` starts the local server, `make test` runs every check.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp
PORT   ?= 8080

.PHONY: setup run test lint typecheck unit fmt bench bench-load docs clean package tf-fmt checkov tf-check screenshots \
	security bandit audit browser

# Checkov lives in its own venv: it pins a fork of python-hcl2 that clashes with the
# python-hcl2 the contract tests use (.venv).
CHECKOV_VENV  := .venv-checkov
CHECKOV_STAMP := $(CHECKOV_VENV)/.installed-stamp

# Two stamps: `make run` installs only what the server needs (the package with its Google
# extras); `make setup` / `make test` add the dev toolchain on top.
RUN_STAMP := $(VENV)/.run-stamp

$(RUN_STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet -e '.[gcp,gemini]'
	touch $(RUN_STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[gcp,gemini,dev]'
	touch $(STAMP) $(RUN_STAMP)

setup: $(STAMP)

run: $(RUN_STAMP)
	$(BIN)/ion serve --port $(PORT)

lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports

typecheck: setup
	$(BIN)/mypy shared tests bench

# Debian's chromium for the browser tests (apt; never a browser download).
browser:
	@sh scripts/ensure_browser.sh

unit: setup browser
	$(BIN)/pytest

test: lint typecheck tf-check unit security

# Static security checks and the dependency audit (scripts/audit_deps.py says why an
# unreachable vulnerability API fails unless AUDIT_OFFLINE=allow).
security: bandit audit

bandit: setup
	$(BIN)/bandit -c pyproject.toml -r shared functions scripts -q

# Where PyPI's vulnerability API is unreachable (this workplace's machines and CI) the audit
# says so in a loud banner instead of failing `make test`; release builds run it strictly
# with `make audit AUDIT_OFFLINE=fail`.
AUDIT_OFFLINE ?= allow
audit: setup
	AUDIT_OFFLINE=$(AUDIT_OFFLINE) $(BIN)/python scripts/audit_deps.py

# dist/<function>.zip for every Cloud Function (main.py + ion + pinned requirements.txt).
package: setup
	$(BIN)/python scripts/package.py

$(CHECKOV_STAMP): terraform/requirements-checkov.txt
	$(PYTHON) -m venv $(CHECKOV_VENV)
	$(CHECKOV_VENV)/bin/python -m pip install --quiet -r terraform/requirements-checkov.txt
	touch $(CHECKOV_STAMP)

tf-fmt:
	@command -v terraform >/dev/null || { echo "terraform not found: install Terraform >= 1.6 (docs/deploy.md)"; exit 1; }
	TF_CLI_CONFIG_FILE=/dev/null terraform fmt -check -recursive terraform

checkov: $(CHECKOV_STAMP)
	$(CHECKOV_VENV)/bin/checkov --config-file .checkov.yaml

tf-check: tf-fmt checkov

fmt: setup
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

docs: setup
	$(BIN)/python scripts/sync_readme.py

bench: setup
	$(BIN)/python bench/route_bench.py
	$(BIN)/python bench/chat_bench.py
	$(BIN)/python bench/stream_ttfb_bench.py
	$(BIN)/python bench/sse_ttfb_bench.py
	$(BIN)/python bench/cold_start_bench.py
	$(BIN)/python bench/overhead_bench.py

# Throughput and tail latency under wrk (apt-get install wrk), several minutes.
bench-load: setup
	$(BIN)/python bench/load_bench.py

clean:
	rm -rf $(VENV) $(CHECKOV_VENV) .pytest_cache .mypy_cache .ruff_cache dist build

# Refresh docs/screenshots/ from the browser tests (a plain test run leaves them alone).
screenshots: setup browser
	ION_SAVE_SCREENSHOTS=1 $(BIN)/pytest -q -p no:randomly tests/e2e/test_web_browser.py tests/e2e/test_web_turns_browser.py
