"""Contract-test fixtures: every connector, each against its own simulator, behind one harness.

``harness`` is parametrised over ALL_CRMS, so each contract test runs once per connector:
``json`` over a temp copy of contacts.json, every vendor over its ``crmsim`` simulator seeded
from the same file (see harness.py). Each test gets fresh simulators: faults, limits and
counters never leak between tests.
"""

from __future__ import annotations

import json
import os
import shutil
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import pytest
import redis

from crmsim.base import Simulator
from tests.contract.harness import (
    ALL_CRMS,
    CONTACTS,
    HANG_S,
    SECRET,
    Harness,
    simulator_class,
)


@pytest.fixture
def make_harness(tmp_path: Path) -> Iterator[Callable[..., Harness]]:
    """``make_harness(crm, contacts=..., **simulator_kwargs)``; simulators stop at teardown."""
    started: list[Simulator] = []

    def make(
        crm: str,
        contacts: str | Path | Iterable[Mapping[str, Any]] = CONTACTS,
        sim_class: type[Simulator] | None = None,
        **sim_kwargs: Any,
    ) -> Harness:
        if crm == "json":
            copy = tmp_path / "contacts.json"
            if isinstance(contacts, str | Path):
                shutil.copyfile(contacts, copy)
            else:
                copy.write_text(json.dumps(list(contacts)), encoding="utf-8")
            return Harness(crm, {"crm": "json", "contacts": copy.name}, {}, tmp_path)
        cls = sim_class or simulator_class(crm)
        sim = cls(contacts, **{"token": SECRET, "hang_s": HANG_S, **sim_kwargs}).start()
        started.append(sim)
        return Harness(crm, dict(sim.connection()), dict(sim.env()), tmp_path, sim)

    yield make
    for sim in started:
        # Simulator.stop waits out serve_forever's 0.5 s poll; stopping in the background
        # keeps that off every test (each simulator has its own ephemeral port).
        threading.Thread(target=sim.stop, name=f"stop-{sim.name}", daemon=True).start()


@pytest.fixture(params=ALL_CRMS)
def harness(request: pytest.FixtureRequest, make_harness: Callable[..., Harness]) -> Harness:
    return make_harness(request.param)


@pytest.fixture
def redis_db() -> Iterator[redis.Redis]:
    """A real Redis, database 14, flushed before and after. Skips locally, fails under CI."""
    url = os.environ["REDIS_URL"]  # the suite's private Redis (tests/conftest.py)
    parts = urlsplit(url)
    if parts.scheme in ("redis", "rediss"):
        # A database in the URL path would win over db=14 in redis-py: strip it.
        url = urlunsplit(parts._replace(path=""))
    client = redis.Redis.from_url(url, db=14)
    where = f"{parts.hostname}:{parts.port or 6379}"  # never the URL: it may hold a password
    try:
        client.ping()
    except redis.RedisError as exc:
        if os.environ.get("CI"):
            pytest.fail(f"Redis at {where} is required under CI: {exc}")
        pytest.skip(f"no Redis at {where}: {exc}")
    client.flushdb()
    yield client
    client.flushdb()
    client.close()
