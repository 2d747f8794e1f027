"""Redis roles kept apart: the contact cache may evict (LRU), the shared state may not.

A second, real redis-server plays the cache, with a 4 MiB ``maxmemory`` and
``allkeys-lru``; the suite's private Redis (``noeviction``) is the state Redis. Each test
fills the cache Redis past its limit and checks that eviction took the cache's own old keys
(so it would have taken state keys had they lived there) while webhook dedupe, the shared
rate limiter and request coalescing still hold. Start-up refuses an evicting state Redis.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from contact_lookup.compose import Runtime, check_state_redis
from contact_lookup.core.request import LookupRequest
from contact_lookup.model.errors import ConfigError, RateLimited
from localredis import EmbeddedRedis
from producers.pipeline import build_pipeline
from tests.conftest import ROOT, settings_for
from tests.fakecrm import FakeCRM, fake_toml, wait_for
from tests.producers.conftest import fixture, queued, write_config

PASSWORD = "lru-secret-pw"
MAXMEMORY = 4 * 1024 * 1024
NUMBERS = [f"+1415555{n:04d}" for n in range(300, 340)]
CONTACTS = [{"id": f"r-{i}", "name": f"Role Test {i}", "phone": n} for i, n in enumerate(NUMBERS)]


@pytest.fixture(scope="module")
def lru_url() -> Iterator[str]:
    """A real LRU Redis for the cache role, started for this module."""
    try:
        server = EmbeddedRedis(
            password=PASSWORD,
            extra=["--maxmemory", str(MAXMEMORY), "--maxmemory-policy", "allkeys-lru"],
        ).start()
    except RuntimeError as exc:
        if os.environ.get("CI"):
            pytest.fail(f"no redis-server for the LRU cache role: {exc}")
        pytest.skip(f"no redis-server: {exc}")
    try:
        yield server.url
    finally:
        server.cleanup()


@pytest.fixture
def lru(lru_url: str) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(lru_url)
    client.flushall()
    yield client
    client.flushall()
    client.close()


def fill_past_limit(client: redis.Redis, gone: Callable[[], bool] = lambda: True) -> int:
    """Write filler into the LRU Redis, half its ``maxmemory`` at a time, until it has evicted
    keys and ``gone()`` holds (the old keys the test watches were evicted); at most 16 times
    ``maxmemory`` (Redis's LRU is approximate: an old key can outlive a first pass). The number
    of keys evicted."""
    before = int(client.info("stats")["evicted_keys"])
    payload = b"x" * 4096
    per_round = MAXMEMORY // 2 // len(payload)
    for round_ in range(32):
        with client.pipeline(transaction=False) as pipe:
            for i in range(per_round):
                pipe.set(f"filler:{round_}:{i}", payload)
            pipe.execute()
        evicted = int(client.info("stats")["evicted_keys"]) - before
        if evicted > 0 and gone():
            return evicted
    raise AssertionError("the cache Redis never evicted the keys the test watches")


def cached_contact_keys(client: redis.Redis) -> int:
    return sum(1 for _ in client.scan_iter("cl:v1:contacts:*", count=1000))


@pytest.fixture
def crm(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeCRM]:
    with FakeCRM(CONTACTS) as sim:
        monkeypatch.setenv(sim.token_env, sim.token)
        yield sim  # type: ignore[misc]


def runtime_for_roles(state_url: str, cache_url: str, toml: Path) -> Runtime:
    return Runtime(settings_for(state_url, toml, cache_url=cache_url))


# ----- start-up refusal ------------------------------------------------------------------------
def test_an_evicting_state_redis_is_refused_and_its_password_never_shown(
    lru_url: str, redis_url: str
) -> None:
    with pytest.raises(ConfigError, match=r"STATE_URL=.*allkeys-lru.*noeviction") as raised:
        check_state_redis(redis.Redis.from_url(lru_url), lru_url)
    assert PASSWORD not in str(raised.value) and "***" in str(raised.value)
    assert check_state_redis(redis.Redis.from_url(redis_url), redis_url) == "noeviction"


def test_every_evicting_policy_is_refused(redis_client: redis.Redis, redis_url: str) -> None:
    """volatile-* policies evict too: the dedupe, limiter and coalescing keys all carry TTLs."""
    policies = ["allkeys-lru", "allkeys-lfu", "allkeys-random", "volatile-lru", "volatile-ttl"]
    old = redis_client.config_get("maxmemory-policy")["maxmemory-policy"]
    try:
        for policy in policies:
            redis_client.config_set("maxmemory-policy", policy)
            with pytest.raises(ConfigError, match=policy):
                check_state_redis(redis_client, redis_url)
    finally:
        redis_client.config_set("maxmemory-policy", old)


def test_the_webhook_producer_refuses_an_evicting_state_redis(
    lru_url: str, redis_url: str, tmp_path: Path
) -> None:
    toml = write_config(tmp_path, 'default = "demo"\n')
    with pytest.raises(ConfigError, match="STATE_URL"):
        build_pipeline(settings_for(redis_url, toml, state_url=lru_url))
    build_pipeline(settings_for(redis_url, toml, cache_url=lru_url)).app.close()  # cache: fine


def test_a_worker_refuses_to_start_on_an_evicting_state_redis(
    lru_url: str, redis_url: str, tmp_path: Path
) -> None:
    toml = write_config(tmp_path, 'default = "demo"\n')
    env = {k: v for k, v in os.environ.items() if not k.endswith("_URL")}
    env.update(REDIS_URL=redis_url, STATE_URL=lru_url, CONTACT_LOOKUP_CONFIG=str(toml))
    if os.environ.get("BROKER_URL"):
        env["BROKER_URL"] = os.environ["BROKER_URL"]
    args = [sys.executable, "-m", "celery", "-A", "worker", "worker", "--pool", "threads"]
    args += ["-c", "1", "-Q", "relookup", "--without-mingle", "--without-gossip"]
    done = subprocess.run(args, cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode != 0
    assert "maxmemory-policy allkeys-lru" in done.stderr and PASSWORD not in done.stderr
    assert " ready." not in done.stderr + done.stdout  # it never consumed a job


# ----- what must hold while the cache evicts ---------------------------------------------------
def test_webhook_dedupe_holds_while_the_cache_redis_evicts(
    lru: redis.Redis, lru_url: str, redis_url: str, redis_client: redis.Redis, tmp_path: Path
) -> None:
    toml = write_config(tmp_path, 'default = "demo"\n')
    producer = build_pipeline(settings_for(redis_url, toml, cache_url=lru_url))
    producer.recorded = True  # 2024 fixtures: judged by their own eventTimes, not stale
    try:
        events = [fixture(n) for n in ("inbound_ringing", "answered", "disconnected")]
        first = [o.action for e in events for o in producer.handle(e)]
        assert first.count("enqueued") == 2  # one call pop, one call log
        lru.set("cl:v1:contacts:canary", b"old cache entry")
        fill_past_limit(lru, lambda: lru.get("cl:v1:contacts:canary") is None)
        again = [o.action for e in events for o in producer.handle(e)]
        assert set(again) == {"duplicate"}, again  # the delivery marks survived
        renamed = [
            o.action for e in events for o in producer.handle({**e, "uuid": "new-" + e["uuid"]})
        ]
        assert "enqueued" not in renamed  # and so did the once-keys
        assert len(queued(redis_client, "call_pop")) == 1
        assert len(queued(redis_client, "call_log")) == 1
    finally:
        producer.app.close()


def test_the_shared_limiter_holds_while_the_cache_redis_evicts(
    lru: redis.Redis, lru_url: str, redis_url: str, crm: FakeCRM, tmp_path: Path
) -> None:
    toml = tmp_path / "cl.toml"
    toml.write_text(fake_toml(crm, rate_limit="3/60"))
    service = runtime_for_roles(redis_url, lru_url, toml).service
    made: list[str] = []
    for number in NUMBERS:
        try:
            service.lookup("fake", LookupRequest(number, purpose="call_pop"))
        except RateLimited:
            break
        made.append(number)
    assert 0 < len(made) < len(NUMBERS) and crm.requests > 0
    spent = crm.requests
    assert cached_contact_keys(lru) == len(made)
    fill_past_limit(lru, lambda: cached_contact_keys(lru) == 0)  # every cached answer evicted
    for number in NUMBERS[len(made) : len(made) + 5]:
        with pytest.raises(RateLimited):
            service.lookup("fake", LookupRequest(number, purpose="call_pop"))
    assert crm.requests == spent and crm.rate_limited == 0  # no request over the budget


def test_coalescing_holds_while_the_cache_redis_evicts(
    lru: redis.Redis, lru_url: str, redis_url: str, crm: FakeCRM, tmp_path: Path
) -> None:
    crm.latency_s = 1.5
    toml = tmp_path / "cl.toml"
    toml.write_text(fake_toml(crm))
    service = runtime_for_roles(redis_url, lru_url, toml).service
    number = NUMBERS[0]
    results: list[dict[str, Any]] = []

    def ask() -> None:
        results.append(service.lookup("fake", LookupRequest(number, purpose="call_log")))

    leader = threading.Thread(target=ask)
    leader.start()
    assert wait_for(lambda: crm.requests >= 1, 5)  # the leader's request is in flight
    fill_past_limit(lru)  # evicts while the lookup is in flight
    followers = [threading.Thread(target=ask) for _ in range(6)]
    for t in followers:
        t.start()
    for t in [leader, *followers]:
        t.join(20)
    assert len(results) == 7 and all(r["successful"] for r in results)
    assert crm.requests == 1  # one CRM request for seven concurrent lookups
    assert sum(bool(r["extraDataTracking"].get("isCoalesced")) for r in results) == 6
