# The two commands of the README: `make demo` (the main job) and `make test` (the checks).
# Both install what they need, idempotently: a virtual environment with the pinned Python
# packages, and the pinned `azurite` npm package for Table Storage.

PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
VENV_STAMP := $(VENV)/.installed
NODE_STAMP := node_modules/.installed

.PHONY: demo test lint typecheck unit bench setup clean browser

setup: $(VENV_STAMP) $(NODE_STAMP)

$(VENV_STAMP): requirements.txt requirements-dev.txt
	@command -v $(PYTHON) >/dev/null 2>&1 || { echo "need $(PYTHON) (set PYTHON=...)"; exit 2; }
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements-dev.txt
	touch $@

$(NODE_STAMP): package.json package-lock.json
	npm ci --no-audit --no-fund --loglevel=error
	touch $@

demo: setup
	$(PY) -m devkit.demo

lint: $(VENV_STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/lint-imports --no-cache

typecheck: $(VENV_STAMP)
	$(VENV)/bin/mypy --strict auditor devkit

unit: setup browser
	$(VENV)/bin/pytest -q

# Debian's chromium + chromedriver for the confirmation-page browser test (idempotent: installs
# only what is missing; root or sudo).
.PHONY: browser
browser:
	@if command -v chromium >/dev/null 2>&1 && command -v chromedriver >/dev/null 2>&1; then :; \
	else SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq chromium chromium-driver >/dev/null; fi

test: lint typecheck unit checkov

bench: setup
	$(PY) benchmarks/run_all.py

clean:
	rm -rf $(VENV) $(CHECKOV_VENV) node_modules .pytest_cache .mypy_cache .ruff_cache

# checkov (Bicep static analysis of infra/) lives in its own venv: its dependency pins clash with
# the project's. run_checkov.py fails on failed checks, parsing errors, or nothing checked.
CHECKOV_VENV := .venv-checkov
CHECKOV_STAMP := $(CHECKOV_VENV)/.installed

$(CHECKOV_STAMP): requirements-checkov.txt
	test -x $(CHECKOV_VENV)/bin/python || $(PYTHON) -m venv $(CHECKOV_VENV)
	$(CHECKOV_VENV)/bin/python -m pip install --quiet --disable-pip-version-check -r requirements-checkov.txt
	touch $@

.PHONY: checkov
checkov: $(CHECKOV_STAMP)
	$(CHECKOV_VENV)/bin/python infra/scripts/run_checkov.py
