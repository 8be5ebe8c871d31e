# SafeFlag: the two quick-start commands (README.md, "Quick start") and a few helpers.
#
#   make run    create .venv if missing, install, migrate the SQLite database under ./var
#               (or $SAFEFLAG_DATA_DIR) and serve on http://127.0.0.1:8080
#   make test   create .venv if missing, install with test extras, run make lint, then the whole suite
#   make lint   ruff, mypy (strict) and the layers contract (import-linter), zero findings
#   make lock   re-resolve requirements*.lock from pyproject.toml (LOCK_ARGS=--upgrade to move every pin)
#
# Dependencies come from the lock files (exact versions with hashes), so every machine installs what CI
# tested; SafeFlag itself is then installed without dependencies. Installs are remembered by stamp files
# in .venv, redone only when pyproject.toml or a lock file changes.

# The first Python >= 3.11 found (override: make run PYTHON=/path/to/python3.12).
PYTHON ?= $(shell for p in python3 python3.13 python3.12 python3.11; do \
	command -v $$p >/dev/null 2>&1 && $$p -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null \
	&& { echo $$p; break; }; done)
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
TEST_STAMP := $(VENV)/.installed-test
LOCK := requirements.lock
TEST_LOCK := requirements-test.lock
PIP := $(PY) -m pip install --quiet --disable-pip-version-check
SERVE_ARGS ?=
PYTEST_ARGS ?=

.PHONY: run test lint lock openapi clean web-assets screenshots

$(PY):
	@test -n "$(PYTHON)" || { echo "SafeFlag needs Python 3.11 or newer (python3 --version: $$(python3 --version 2>&1))"; exit 1; }
	@echo "creating $(VENV) with $(PYTHON) ($$($(PYTHON) --version))"
	@$(PYTHON) -m venv $(VENV) || { rm -rf $(VENV); \
		echo "python -m venv failed: on Debian/Ubuntu install the venv module (apt-get install python3-venv)"; exit 1; }
	@$(PY) -m pip install --quiet --disable-pip-version-check --upgrade pip

$(STAMP): pyproject.toml $(LOCK) | $(PY)
	@echo "installing SafeFlag and its locked dependencies into $(VENV)"
	@$(PIP) -r $(LOCK)
	@$(PIP) --no-deps -e .
	@touch $@

# The test lock holds the runtime lock's pins too (it is resolved within them), so it also makes $(STAMP).
$(TEST_STAMP): pyproject.toml $(TEST_LOCK) | $(PY)
	@echo "installing SafeFlag with its locked test dependencies into $(VENV)"
	@$(PIP) -r $(TEST_LOCK)
	@$(PIP) --no-deps -e .
	@touch $@ $(STAMP)

# The NHS.UK frontend CSS/JS the web app serves: the npm tarball pinned by version and sha512 integrity in
# app/web/assets.py, fetched with Python's urllib into app/web/static/vendor/ (ignored); no Node needed.
WEB_ASSETS := app/web/static/vendor/VERSION
$(WEB_ASSETS): app/web/assets.py | $(PY)
	@$(PY) -m app.web.assets
	@touch $@
web-assets: $(WEB_ASSETS)

# The web app's pictures in README.md and docs/web-app.md (docs/images/web-*.png): the system Chromium,
# the browser tests' OpenID Connect provider, and a server on a fixed clock (tests/web/screenshots.py).
screenshots: $(TEST_STAMP) $(WEB_ASSETS)
	$(PY) -m tests.web.screenshots

# `safeflag serve` migrates the database first, then prints the FHIR base URL and how to mint a token.
run: $(STAMP) $(WEB_ASSETS)
	$(VENV)/bin/safeflag serve $(SERVE_ARGS)

# Lint first: a finding fails `make test` (and so CI) before the suite runs.
test: lint $(WEB_ASSETS)
	$(PY) -m pytest $(PYTEST_ARGS)

lint: $(TEST_STAMP)
	$(PY) -m ruff check app tests bench
	$(PY) -m mypy
	$(VENV)/bin/lint-imports --no-logo --no-cache

# uv resolves the locks (one set of pins for Python 3.11+ on every platform, with hashes); installing
# from them needs only pip. The test lock is resolved within the runtime lock's pins.
LOCK_ARGS ?=
UV_COMPILE = $(VENV)/bin/uv pip compile pyproject.toml --universal --python-version 3.11 --generate-hashes \
	--custom-compile-command "make lock" --quiet $(LOCK_ARGS)
lock: | $(PY)
	@$(PIP) 'uv>=0.13'
	$(UV_COMPILE) -o $(LOCK)
	$(UV_COMPILE) --extra test -c $(LOCK) -o $(TEST_LOCK)

# Regenerate the committed OpenAPI document (a test fails when it is out of date).
openapi: $(STAMP)
	$(PY) -m app.openapi_yaml > openapi.yaml.tmp && mv openapi.yaml.tmp openapi.yaml

# The benchmark (not a test; docs/benchmarks.md): SafeFlag vs the raw ceiling on SQLite and PostgreSQL,
# then the CP-IS search at 100 k patients / 300 k flags. Results in bench/results/. Uses wrk when
# installed (apt-get install -y wrk). BENCH_ARGS=--quick for a short run.
BENCH_ARGS ?=
.PHONY: bench
bench: $(STAMP)
	$(PY) -m bench.run $(BENCH_ARGS)
	$(PY) -m bench.seed_large

# Offline check of fhir_profiles/ with HAPI FHIR 8.8.0's validator: every example against its meta.profile,
# exit 1 on any error (tests/hapi/launcher; Java 17+ and Maven; the jar is rebuilt when its sources change).
HAPI_LAUNCHER := tests/hapi/launcher
HAPI_JAR := $(HAPI_LAUNCHER)/target/hapi-launcher.jar
PROFILES_DIR ?= fhir_profiles

$(HAPI_JAR): $(HAPI_LAUNCHER)/pom.xml $(shell find $(HAPI_LAUNCHER)/src -type f 2>/dev/null)
	mvn -q -B -f $(HAPI_LAUNCHER)/pom.xml -DskipTests package
	@touch $@

.PHONY: validate-profiles
validate-profiles: $(HAPI_JAR)
	java -Dloader.main=org.safeflag.hapi.ValidateProfiles -jar $(HAPI_JAR) $(PROFILES_DIR)

# The virtualenv and caches only: ./var holds the database and the token issuer key.
clean:
	rm -rf $(VENV) .pytest_cache .hypothesis
