"""Request coalescing on a real Redis (database 11): one set of CRM requests for concurrent
lookups of one number, across threads and processes; failures are never shared as success;
a dead or failed leader never leaves its followers hanging."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

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
from contact_lookup.model.errors import CRMUnavailable, TransientCRMError
from tests.conftest import ROOT, db_url, flushed_db
from tests.fakecrm import FakeCRM, fake_toml

DB = 11
NUMBER, FORMATTED = "+14155550142", "(415) 555-0142"
CONTACTS = [{"id": "c-42", "name": "Ann Coalesce", "phones": [NUMBER, FORMATTED]}]


@pytest.fixture
def client() -> Iterator[redis.Redis]:
    with flushed_db(DB) as url, redis.Redis.from_url(url) as client:
        yield client


def together(n: int, call: Callable[[int], Any]) -> list[Any]:
    """Run ``call(i)`` in n threads started at once; each outcome is a value or the exception."""
    barrier = threading.Barrier(n)
    out: list[Any] = [None] * n

    def one(i: int) -> None:
        barrier.wait()
        try:
            out[i] = call(i)
        except Exception as exc:  # the test inspects it
            out[i] = exc

    threads = [threading.Thread(target=one, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    return out


def followers_waiting(client: redis.Redis, n: int, timeout_s: float = 10.0) -> bool:
    """True once ``n`` connections are blocked in BLMOVE on a wake-up list: the followers of
    a coalesced lookup, waiting for their leader (polled with a deadline, never slept)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        blocked = [c for c in client.client_list() if c.get("cmd") == "blmove"]
        if len(blocked) >= n:
            return True
        time.sleep(0.01)
    return False


# ----- the Coalescer itself ----------------------------------------------------------------
def test_concurrent_callers_share_one_run(client: redis.Redis) -> None:
    calls: list[int] = []

    def work() -> dict[str, Any]:
        calls.append(1)
        assert followers_waiting(client, 7)  # the leader answers once everyone has joined
        return {"successful": True, "extraDataTracking": {"ratelimitRemaining": 7}}

    coalescer = Coalescer(client, result_ttl_s=5)
    name = Coalescer.name("cl:v1:contacts:x", forced=False)
    results = together(8, lambda i: coalescer.run(name, work))
    assert len(calls) == 1
    assert all(
        r["successful"] and r["extraDataTracking"]["ratelimitRemaining"] == 7 for r in results
    )
    assert sum(bool(r["extraDataTracking"].get("isCoalesced")) for r in results) == 7
    # the lock is gone; the result slot and wake-up list expire on their own
    assert client.get(keys.coalesce(name)) is None
    left = [k.decode() for k in client.keys("*")]
    assert len(left) == 2 and all(0 < client.pttl(k) <= 5000 for k in left)


def test_a_failed_leader_is_not_served_as_success(client: redis.Redis) -> None:
    calls: list[int] = []

    def work() -> dict[str, Any]:
        calls.append(1)
        if len(calls) == 1:
            assert followers_waiting(client, 4)
            raise CRMUnavailable("leader failed")
        return {"successful": True, "extraDataTracking": {}, "own": True}

    coalescer = Coalescer(client)
    started = time.monotonic()
    results = together(5, lambda i: coalescer.run("any:failing", work))
    assert time.monotonic() - started < 2  # woken by the failure, not by a timeout
    failures = [r for r in results if isinstance(r, CRMUnavailable)]
    assert len(failures) == 1 and len(calls) == 5  # every follower looked up for itself
    assert all(
        r["own"] and "isCoalesced" not in r["extraDataTracking"]
        for r in results
        if isinstance(r, dict)
    )


def test_a_leader_that_never_answers_does_not_hang_its_followers(client: redis.Redis) -> None:
    def work() -> dict[str, Any]:
        return {"successful": True, "extraDataTracking": {}, "own": True}

    client.set(keys.coalesce("any:stuck"), "ghost", px=60_000)  # alive but silent
    started = time.monotonic()
    assert Coalescer(client, wait_s=0.5).run("any:stuck", work)["own"]
    assert 0.5 <= time.monotonic() - started < 1.5
    client.set(keys.coalesce("any:dead"), "ghost", px=200)  # died: its lock lapses
    started = time.monotonic()
    assert Coalescer(client, wait_s=5, slice_s=0.1).run("any:dead", work)["own"]
    assert time.monotonic() - started < 1.0


def test_forced_refreshes_have_their_own_name() -> None:
    key = "cl:v1:contacts:111:fake:abc:+14155550142:def"
    assert Coalescer.name(key, forced=True) != Coalescer.name(key, forced=False)
    assert Coalescer.name(key, forced=False) == Coalescer.name(key, forced=False)
    assert Coalescer.name(key, forced=False) != Coalescer.name(key + "x", forced=False)


# ----- through the lookup service, against a CRM over HTTP -----------------------------------
@pytest.fixture
def crm(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeCRM]:
    with FakeCRM(CONTACTS, latency_s=0.3) as sim:
        for key, value in sim.env().items():
            monkeypatch.setenv(key, value)
        yield sim


def config(tmp_path: Path, crm: FakeCRM) -> Path:
    toml = tmp_path / "connections.toml"
    toml.write_text(fake_toml(crm, formats="(***) ***-****", rate_limit="100/60"))
    return toml


def service(client: redis.Redis, toml: Path) -> LookupService:
    connectors = ConnectorFactory(timeout_s=5)
    return LookupService(
        load_config(toml),
        ContactCache(client),
        connectors,
        limiter=RateLimiter(client),
        coalescer=Coalescer(client),
    )


def test_forced_refresh_coalesces_only_with_forced_refreshes(
    client: redis.Redis, tmp_path: Path, crm: FakeCRM
) -> None:
    svc = service(client, config(tmp_path, crm))
    results = together(
        6,
        lambda i: svc.lookup(
            "fake", LookupRequest(NUMBER, purpose="call_log", force_refresh=i % 2 == 0)
        ),
    )
    assert all(r["successful"] for r in results)
    # one set (two formats) for the three plain lookups, one for the three forced ones
    assert sorted(crm.queries) == sorted([NUMBER, FORMATTED] * 2)


def test_followers_of_a_failed_leader_get_their_own_answer(
    client: redis.Redis, tmp_path: Path, crm: FakeCRM
) -> None:
    svc = service(client, config(tmp_path, crm))
    crm.inject("503")  # the leader's first request fails; the CRM is fine after that
    results = together(4, lambda i: svc.lookup("fake", LookupRequest(NUMBER, purpose="call_log")))
    failed = [r for r in results if isinstance(r, TransientCRMError)]
    succeeded = [r for r in results if isinstance(r, dict)]
    assert len(failed) == 1 and len(succeeded) == 3
    assert all(r["successful"] and r["matchedContactInfo"][0]["id"] == "c-42" for r in succeeded)
    assert not any(r["extraDataTracking"].get("isCoalesced") for r in succeeded)


# ----- across processes --------------------------------------------------------------------
THREADS_PER_PROCESS = 4


def child_main() -> None:
    """One process of the cross-process test: the production wiring (Runtime), N threads."""
    from contact_lookup.compose import Runtime
    from contact_lookup.settings import Settings

    go_key = sys.argv[1]
    runtime = Runtime(Settings.from_env())
    svc, r = runtime.service, runtime.state_redis
    print("ready", flush=True)
    # Short waits: the client times out reads after 5 s, and the other process may take
    # longer than that to start on a busy machine.
    deadline = time.monotonic() + 30
    while r.blpop([go_key], timeout=1) is None:
        assert time.monotonic() < deadline, "never told to go"
    results = together(
        THREADS_PER_PROCESS, lambda i: svc.lookup("fake", LookupRequest(NUMBER, purpose="call_log"))
    )
    print(json.dumps([x if isinstance(x, dict) else repr(x) for x in results]), flush=True)


def test_lookups_in_two_processes_make_one_request_per_format(
    client: redis.Redis, tmp_path: Path, crm: FakeCRM
) -> None:
    toml = config(tmp_path, crm)
    env = {
        **os.environ,
        **crm.env(),
        "REDIS_URL": db_url(DB),
        # The child imports this module, so tests/conftest.py: without this opt-in it would
        # start a private redis-server of its own and point REDIS_URL there.
        "TEST_REDIS_URL": db_url(DB),
        "CONTACT_LOOKUP_CONFIG": str(toml),
        "PYTHONPATH": str(ROOT),
    }
    for var in ("BROKER_URL", "RESULT_BACKEND", "CACHE_URL", "STATE_URL"):
        env.pop(var, None)
    go_key = "test:coalesce:go"
    code = "from tests.integration.test_coalesce import child_main; child_main()"
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", code, go_key],
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    try:
        for p in procs:
            assert p.stdout is not None and p.stdout.readline().strip() == "ready"
        client.rpush(go_key, "go", "go")  # both processes start their threads together
        outputs = [p.communicate(timeout=30)[0] for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    results = [res for out in outputs for res in json.loads(out.strip().splitlines()[-1])]
    assert len(results) == 2 * THREADS_PER_PROCESS
    assert all(isinstance(r, dict) and r["successful"] for r in results), results
    assert all(r["matchedContactInfo"][0]["id"] == "c-42" for r in results)
    assert sorted(crm.queries) == sorted([NUMBER, FORMATTED])  # one request per format
    assert crm.by_path["/contacts"] == 2
    shared = [r for r in results if r["extraDataTracking"].get("isCoalesced")]
    assert len(shared) == 2 * THREADS_PER_PROCESS - 1
    # the followers took no tokens: only the leader's two requests are in the budget
    fake = load_config(toml).connection("fake")
    assert client.zcard(keys.rate_bucket(fake.name, fake.instance)) == 2
