# SafeFlag: the two quick-start commands (contract section 1) and a few helpers.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
TEST_STAMP := $(VENV)/.installed-test

.PHONY: run test openapi bench clean

$(VENV)/bin/python:
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip

$(STAMP): pyproject.toml | $(VENV)/bin/python
	$(PY) -m pip install --quiet -e .
	touch $@

$(TEST_STAMP): pyproject.toml | $(VENV)/bin/python
	$(PY) -m pip install --quiet -e '.[test]'
	touch $@ $(STAMP)

run: $(STAMP)
	$(VENV)/bin/safeflag serve

test: $(TEST_STAMP)
	$(PY) -m pytest $(PYTEST_ARGS)

openapi: $(STAMP)
	$(PY) -m app.openapi > openapi.yaml

clean:
	rm -rf $(VENV) var .pytest_cache
