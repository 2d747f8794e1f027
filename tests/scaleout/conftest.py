"""Fixtures of the scale-out suite (``make scaleout``; CI runs it): kill tests on both
brokers, and whatever needs several worker processes and minutes rather than seconds.

Not collected by ``make test`` (tests/conftest.py ignores this folder unless
``CONTACT_LOOKUP_SCALEOUT=1``). Redis database 9 of the test Redis, flushed around each test;
figures are printed at the end like the fault suite's (``FAULTS <name>: ...``).
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import redis

from tests.conftest import db_url, require_redis
from tests.faults.conftest import pytest_terminal_summary  # noqa: F401  (prints the figures)

SCALEOUT_DB = 9


@pytest.fixture
def faults_url() -> Iterator[str]:
    """Database 9 of the test Redis, flushed before and after."""
    url = db_url(SCALEOUT_DB)
    require_redis(url)
    with redis.Redis.from_url(url) as client:
        client.flushdb()
        yield url
        client.flushdb()


@pytest.fixture
def faults_redis(faults_url: str) -> Iterator[redis.Redis]:
    with redis.Redis.from_url(faults_url) as client:
        yield client
