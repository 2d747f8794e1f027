"""Fixtures of the fault suite: a real Redis (database 10, flushed around each test), the
figures each test reports for the README's "Reliability" section, the ``faults`` marker, and
the ``redis_transport(why)`` marker.

The suite runs on either broker: on a RabbitMQ run (``make test-amqp``: ``BROKER_URL`` is an
AMQP URL) every test sends to and works from RabbitMQ, except those marked
``redis_transport``, which exercise kombu's Redis transport itself (its ``unacked`` hash, a
Redis broker restarted under them) and are skipped, each saying why.

Figures are printed at the end of the run (pytest's terminal summary) and written to
``<tmp>/contact-lookup-faults/last_run.json``; nothing is written into the source tree.
"""

from __future__ import annotations

import json
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from tests.conftest import AMQP_BROKER_URL, db_url, require_redis
from tests.faults.faultkit import FAULTS_DB, FIGURES


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "faults: the fault suite (worker kills, broker restarts, CRM faults, fuzzing)"
    )
    config.addinivalue_line(
        "markers",
        "redis_transport(why): specific to kombu's Redis transport; skipped on a RabbitMQ run",
    )


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """On a RabbitMQ run, skip the tests of the Redis transport, with their own reason."""
    if AMQP_BROKER_URL is None:
        return
    for item in items:
        marker = item.get_closest_marker("redis_transport")
        if marker is not None:
            why = marker.args[0] if marker.args else "exercises it"
            item.add_marker(pytest.mark.skip(reason=f"specific to the Redis transport: {why}"))


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if not FIGURES:
        return
    out = Path(tempfile.gettempdir()) / "contact-lookup-faults" / "last_run.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"at": time.time(), "figures": FIGURES}, indent=2) + "\n")
    terminalreporter.section("fault suite figures")
    for name, values in FIGURES.items():
        terminalreporter.write_line(
            f"FAULTS {name}: " + ", ".join(f"{k}={v}" for k, v in values.items())
        )
    terminalreporter.write_line(f"(written to {out})")


@pytest.fixture
def faults_url() -> Iterator[str]:
    """Database 10 of the test Redis, flushed before and after."""
    url = db_url(FAULTS_DB)
    require_redis(url)
    client = redis.Redis.from_url(url)
    client.flushdb()
    yield url
    client.flushdb()
    client.close()


@pytest.fixture
def faults_redis(faults_url: str) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(faults_url)
    yield client
    client.close()
