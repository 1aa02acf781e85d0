# `make test` and `make demo` set up everything on a fresh machine: a .venv with the project
# and its dev extras, and redis-server when it is missing (the Redis tests start their own).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-dev
BENCH_STAMP := $(VENV)/.installed-bench
DOCS_STAMP := $(VENV)/.installed-docs

.PHONY: test check lint typecheck pytest test-pythons demo bench docs docs-serve release-check install redis-server clean

test: install redis-server lint typecheck pytest

install: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

$(BENCH_STAMP): $(STAMP)
	$(BIN)/python -m pip install --quiet -e '.[dev,bench]'
	touch $(BENCH_STAMP)

$(DOCS_STAMP): $(STAMP)
	$(BIN)/python -m pip install --quiet -e '.[dev,docs]'
	touch $(DOCS_STAMP)

# The tests never use a Redis already running on this machine; they start redis-server on a
# free port. Install the binary when it is missing (Debian/Ubuntu, as root or with sudo).
redis-server:
	@command -v redis-server >/dev/null 2>&1 || { \
		echo "installing redis-server"; \
		SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
		$$SUDO apt-get update -qq && $$SUDO apt-get install -y -qq redis-server >/dev/null; }

lint: $(STAMP)
	$(BIN)/ruff check resilience tests benchmarks examples
	$(BIN)/ruff format --check resilience tests benchmarks examples

typecheck: $(STAMP)
	$(BIN)/mypy --strict resilience
	$(BIN)/mypy --strict tests/typing

pytest: $(STAMP)
	$(BIN)/pytest -q

# The quick loop: lint, then every test that starts no redis-server, no HTTP server and no
# example (markers in pyproject.toml), property tests on 10 examples each. `make test` runs all.
# Bytecode is cached even where the environment turns it off: recompiling the package and
# re-rewriting the tests' asserts cost more than the tests themselves.
check: $(STAMP)
	$(BIN)/ruff check resilience tests benchmarks examples
	$(BIN)/ruff format --check resilience tests benchmarks examples
	PYTHONDONTWRITEBYTECODE= $(BIN)/pytest -q -m "not redis and not server and not examples" \
		--hypothesis-profile=check

# The whole suite on the oldest Python we claim and the newest CPython here, in .venv-<version>
# (see .ci/pythons); a missing interpreter is skipped with a warning.
test-pythons: redis-server
	.ci/pythons

demo: $(STAMP)
	$(BIN)/python examples/checkout.py
	$(BIN)/python examples/flaky_payments.py

# Every scenario, full length; the plots of the run go to docs/plots/ (the Benchmarks page),
# each stamped with the run's date and machine; the fleet's beside the results they are drawn
# from (fleet-*.json: `python -m benchmarks fleet --replot docs/plots` redraws them).
bench: $(BENCH_STAMP)
	$(BIN)/python -m benchmarks --plots docs/plots

# The documentation site (mkdocs.yml): strict, so a broken link, anchor or API reference
# entry fails the build. Every ```python block of docs/ runs in tests/test_docs_examples.py.
docs: $(DOCS_STAMP)
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict

docs-serve: $(DOCS_STAMP)
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs serve --dev-addr 127.0.0.1:8000

# Build the sdist and wheel, twine-check them, install the wheel (with [otlp,redis]) into a bare
# virtualenv and run the README's examples against it from outside the checkout (its Redis
# example against a redis-server of its own on a free port).
release-check: $(STAMP) redis-server
	$(BIN)/python .ci/release_check.py

clean:
	rm -rf $(VENV) .venv-3.* .mypy_cache .pytest_cache .ruff_cache .hypothesis site
