"""The Redis round trips of a cache-miss lookup in the core (issue 13): the cache read, then
one script for the coalescing election and the rate limiter's tokens, then one script that
hands the answer to followers (with the cache write when there is a match). Counted with
MONITOR on a real Redis (database 11), against a CRM over HTTP."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from contact_lookup.connectors.registry import ConnectorFactory
from contact_lookup.core import keys
from contact_lookup.core.cache import ContactCache
from contact_lookup.core.coalesce import Coalescer
from contact_lookup.core.ratelimit import RateLimiter
from contact_lookup.core.request import LookupRequest
from contact_lookup.core.service import LookupService
from contact_lookup.model.config import load_config
from contact_lookup.model.errors import RateLimited
from tests.conftest import flushed_db
from tests.fakecrm import FakeCRM, fake_toml
from tests.redismonitor import client_commands

DB = 11
NUMBER = "+14155550142"
CONTACTS = [{"id": "c-42", "name": "Ann Trips", "phones": [NUMBER]}]


@pytest.fixture
def client() -> Iterator[redis.Redis]:
    with flushed_db(DB) as url, redis.Redis.from_url(url) as client:
        yield client


@pytest.fixture
def crm(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeCRM]:
    with FakeCRM(CONTACTS) as sim:
        for key, value in sim.env().items():
            monkeypatch.setenv(key, value)
        yield sim


def service(client: redis.Redis, tmp_path: Path, crm: FakeCRM, rate_limit: str) -> LookupService:
    toml = tmp_path / "connections.toml"
    toml.write_text(fake_toml(crm, formats="", rate_limit=rate_limit))
    return LookupService(
        load_config(toml),
        ContactCache(client),
        ConnectorFactory(timeout_s=5),
        limiter=RateLimiter(client),
        coalescer=Coalescer(client),
    )


def test_a_cache_miss_is_a_read_and_two_scripts(
    client: redis.Redis, tmp_path: Path, crm: FakeCRM
) -> None:
    svc = service(client, tmp_path, crm, "100/60")
    svc.lookup("fake", LookupRequest("+14155550100", purpose="call_log"))  # loads the scripts
    results = []
    sent = client_commands(
        client, lambda: results.append(svc.lookup("fake", LookupRequest("+14155550199")))
    )
    assert results[0]["successful"] and not results[0]["matchedContactInfo"]
    # the cache GET; election + tokens; the hand-off (no vendor figures: nothing to follow)
    assert sent == ["GET", "EVALSHA", "EVALSHA"]
    matched = client_commands(
        client, lambda: results.append(svc.lookup("fake", LookupRequest(NUMBER)))
    )
    assert results[1]["matchedContactInfo"][0]["id"] == "c-42"
    assert matched == ["GET", "EVALSHA", "EVALSHA"]  # the cache write is in the hand-off
    assert svc.cache.get(svc.prepare("fake", LookupRequest(NUMBER)).cache_key)


def test_a_deferred_lookup_leads_nobody(client: redis.Redis, tmp_path: Path, crm: FakeCRM) -> None:
    svc = service(client, tmp_path, crm, "1/60")
    svc.lookup("fake", LookupRequest("+14155550100"))  # the one token of the window
    request = LookupRequest(NUMBER)
    with pytest.raises(RateLimited):
        svc.lookup("fake", request)
    name = Coalescer.name(svc.prepare("fake", request).cache_key, forced=False)
    assert client.get(keys.coalesce(name)) is None  # the next lookup tries for itself
    assert crm.queries == ["+14155550100"]
