"""The shared rate limiter end to end, on Redis database 11 and a CRM simulator over real HTTP.

- Two real ``celery worker`` processes (threads pool, 4 threads each) share one budget: 60
  lookups against a CRM that allows R requests a second, with the connection's rate_limit set
  to the same R, get no 429 at all, and the limiter visibly deferred work (retries).
- The call-pop reserve: with the other purposes' share used up, a call pop still gets tokens
  while a re-lookup is deferred, without a CRM request.
- The CRM's word holds everyone off: remaining 0 with a reset, or a 429.

The simulator and its connector are the shared test CRM of tests/fakecrm.py (exact match,
Bearer token, X-RateLimit-* headers, 429 + Retry-After); ``crm = "tests.fakecrm:..."`` names its
connector in the worker processes.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
import requests

from contact_lookup.connectors.registry import ConnectorFactory
from contact_lookup.core.cache import ContactCache
from contact_lookup.core.coalesce import Coalescer
from contact_lookup.core.ratelimit import RateLimiter
from contact_lookup.core.request import LookupRequest
from contact_lookup.core.service import LookupService
from contact_lookup.model.config import load_config
from contact_lookup.model.errors import RateLimited
from contact_lookup.model.purpose import PURPOSES
from tasks.celery_app import create_app
from tasks.enqueue import enqueue
from tests.conftest import flushed_db, settings_for
from tests.fakecrm import FakeCRM, fake_toml
from tests.processes import WorkerProcess, base_env

LIMITER_DB = 11
RATE = 30  # requests per second, at the CRM and in the connection's rate_limit
NUMBERS = [f"+1415555{2000 + i:04d}" for i in range(60)]
CONTACTS = [{"id": f"n-{i}", "name": f"Person {i}", "phone": n} for i, n in enumerate(NUMBERS)]


@pytest.fixture
def url() -> Iterator[str]:
    with flushed_db(LIMITER_DB) as url:
        yield url


def write_config(tmp_path: Path, sim: FakeCRM, **extra: Any) -> Path:
    toml = tmp_path / "connections.toml"
    toml.write_text(fake_toml(sim, **extra))
    return toml


# ----- two worker processes ----------------------------------------------------------------
def test_two_worker_processes_share_one_budget(url: str, tmp_path: Path) -> None:
    with FakeCRM(CONTACTS, rate_limit=(RATE, 1.0)) as sim:
        # Two formats: each lookup makes two requests and takes two tokens at once.
        toml = write_config(tmp_path, sim, formats="(***) ***-****", rate_limit=f"{RATE}/1")
        env = base_env(**sim.env(), REDIS_URL=url, CONTACT_LOOKUP_CONFIG=str(toml))
        app = create_app(settings_for(url, toml))
        workers = [
            WorkerProcess(env, tmp_path, f"lim{i}", queues=",".join(PURPOSES), concurrency=4)
            for i in (1, 2)
        ]
        try:
            for w in workers:
                w.start()
            started = time.monotonic()
            pending = [enqueue(app, "fake", LookupRequest(n, purpose="call_log")) for n in NUMBERS]
            results = [p.get(timeout=60) for p in pending]
            elapsed = time.monotonic() - started
            served_by = {app.backend.get_task_meta(p.id)["worker"] for p in pending}
        finally:
            for w in workers:
                w.stop()
        assert all(r["successful"] for r in results), [r for r in results if not r["successful"]]
        assert [r["matchedContactInfo"][0]["id"] for r in results] == [c["id"] for c in CONTACTS]
        assert sim.rate_limited == 0  # the CRM never had to say no
        assert sim.requests == 2 * len(NUMBERS)  # and nothing was asked twice
        assert len(served_by) == 2  # both processes did work, from one shared budget
        retries = [r["extraDataTracking"].get("retryCount", 0) for r in results]
        assert sum(retries) > 0  # the limiter deferred work it could not send yet
        # 120 requests at most 24 (the budget less the call-pop reserve) per 1.1 s
        assert elapsed >= (2 * len(NUMBERS) / (RATE - 6) - 1) * 1.1 - 0.5


# ----- in one process: the reserve and the CRM's word ---------------------------------------
def make_service(url: str, toml: Path) -> tuple[LookupService, redis.Redis]:
    client = redis.Redis.from_url(url)
    connectors = ConnectorFactory(timeout_s=5)
    service = LookupService(
        load_config(toml),
        ContactCache(client),
        connectors,
        limiter=RateLimiter(client),
        coalescer=Coalescer(client),
    )
    return service, client


@pytest.fixture
def crm(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeCRM]:
    with FakeCRM(CONTACTS) as sim:
        for key, value in sim.env().items():
            monkeypatch.setenv(key, value)
        yield sim


def test_call_pops_keep_a_reserved_share(url: str, tmp_path: Path, crm: FakeCRM) -> None:
    # 10 per minute, 20% (2 tokens) for call pops; no formats: one request per lookup
    service, _ = make_service(url, write_config(tmp_path, crm, rate_limit="10/60"))
    for n in NUMBERS[:8]:
        assert service.lookup("fake", LookupRequest(n, purpose="relookup"))["successful"]
    assert crm.requests == 8
    with pytest.raises(RateLimited) as deferred:
        service.lookup("fake", LookupRequest(NUMBERS[8], purpose="relookup"))
    assert 55 < deferred.value.retry_after_s <= 66  # until the first token is free
    with pytest.raises(RateLimited):
        service.lookup("fake", LookupRequest(NUMBERS[8], purpose="call_log"))
    assert crm.requests == 8  # deferred before any request
    pop = service.lookup("fake", LookupRequest(NUMBERS[9], purpose="call_pop"))
    assert pop["successful"] and pop["matchedContactInfo"][0]["id"] == "n-9"
    assert service.lookup("fake", LookupRequest(NUMBERS[10], purpose="call_pop"))["successful"]
    assert crm.requests == 10
    with pytest.raises(RateLimited):  # the reserve is spent too now
        service.lookup("fake", LookupRequest(NUMBERS[11], purpose="call_pop"))
    assert crm.requests == 10


def test_remaining_zero_holds_every_worker_off_until_the_reset(
    url: str, tmp_path: Path, crm: FakeCRM
) -> None:
    crm.set_rate_limit((1, 3))  # the CRM allows less than we were told
    toml = write_config(tmp_path, crm, rate_limit="100/1")
    service, _ = make_service(url, toml)
    other_worker, _ = make_service(url, toml)
    first = service.lookup("fake", LookupRequest(NUMBERS[0], purpose="call_pop"))
    assert first["extraDataTracking"]["ratelimitRemaining"] == 0
    with pytest.raises(RateLimited) as held:
        other_worker.lookup("fake", LookupRequest(NUMBERS[1], purpose="call_pop"))
    assert held.value.status_code is None and 0 < held.value.retry_after_s <= 3.1
    assert crm.requests == 1 and crm.rate_limited == 0  # held off without asking


def test_a_429_holds_every_worker_off(url: str, tmp_path: Path, crm: FakeCRM) -> None:
    crm.set_rate_limit((1, 3))
    toml = write_config(tmp_path, crm, rate_limit="100/1")
    service, _ = make_service(url, toml)
    other_worker, _ = make_service(url, toml)
    # someone else spends the CRM's window (another integration on the same token)
    requests.get(
        f"{crm.url}/contacts",
        params={"query": "x"},
        headers={"Authorization": f"Bearer {crm.token}"},
        timeout=5,
    )
    with pytest.raises(RateLimited) as answered:
        service.lookup("fake", LookupRequest(NUMBERS[0], purpose="call_pop"))
    assert answered.value.status_code == 429 and crm.rate_limited == 1
    with pytest.raises(RateLimited) as held:
        other_worker.lookup("fake", LookupRequest(NUMBERS[1], purpose="call_pop"))
    assert held.value.status_code is None and held.value.retry_after_s > 1
    assert crm.requests == 2  # the held-off lookup sent nothing
