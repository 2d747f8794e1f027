"""Contract-test fixtures: every connector, each against its own simulator, behind one harness.

``harness`` is parametrised over ALL_CRMS, so each contract test runs once per connector:
``json`` over a temp copy of contacts.json, every vendor over its ``crmsim`` simulator seeded
from the same file (see harness.py). Each test gets fresh simulators: faults, limits and
counters never leak between tests.
"""

from __future__ import annotations

import json
import shutil
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest
import redis

from crmsim.base import Simulator
from tests.conftest import flushed_db
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


CONTRACT_DB = 14


@pytest.fixture
def redis_db() -> Iterator[redis.Redis]:
    """A real Redis, database 14, flushed before and after (tests/conftest.py flushed_db)."""
    with flushed_db(CONTRACT_DB) as url:
        client = redis.Redis.from_url(url)
        yield client
        client.close()
