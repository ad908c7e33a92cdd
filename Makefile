# Development tasks. `make test` installs what is missing, then runs the tests.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: venv node_modules test demo lint

venv: $(VENV)/.installed

# Reinstall when pyproject.toml is newer than the last install.
$(VENV)/.installed: pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet -e '.[test,browser]'
	touch $@

node_modules: node_modules/.installed

# `npm ci` installs the OpenCode server pinned in package-lock.json.
node_modules/.installed: package.json package-lock.json
	npm ci --no-audit --no-fund
	touch $@

test: venv node_modules
	$(BIN)/pytest

demo: venv node_modules
	$(BIN)/python -m opencode_notebook.cli demo

lint: venv
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
