"""Issue 11, item 2: every CRM request is paid for before it is sent, and the shared budget
follows what the vendor announces of its own limit. Real Redis, real simulators, the real
guard (LookupService with a RateLimiter)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import redis

from contact_lookup.connectors.registry import ConnectorFactory
from contact_lookup.core.cache import ContactCache
from contact_lookup.core.ratelimit import RateLimiter
from contact_lookup.core.request import LookupRequest
from contact_lookup.core.service import LookupService
from contact_lookup.model.config import parse_config
from contact_lookup.model.errors import RateLimited
from tests.contract.harness import CONNECTION, Harness

Make = Callable[..., Harness]
DEADLINE_S = 20.0


def service(h: Harness, client: redis.Redis, **table: Any) -> LookupService:
    config = parse_config(
        {"connections": {CONNECTION: {"rc_account": "acct", **h.table, **table}}}, Path(".")
    )
    return LookupService(
        config,
        ContactCache(client, ttl_s=60),
        ConnectorFactory(env=dict(h.env), timeout_s=2.0),
        limiter=RateLimiter(client),
    )


def until_done(svc: LookupService, request: LookupRequest) -> tuple[dict[str, Any], int]:
    """The lookup, retried after each deferral as the task would (its countdown, not a
    fixed sleep); also how many times it was deferred."""
    deferred, deadline = 0, time.monotonic() + DEADLINE_S
    wake = threading.Event()
    while True:
        try:
            return svc.lookup(CONNECTION, request), deferred
        except RateLimited as exc:
            deferred += 1
            assert time.monotonic() < deadline, "the lookup never got its budget"
            wake.wait(exc.retry_after_s or 0.05)


def test_requests_past_the_planned_ones_are_paid_before_they_are_sent(
    make_harness: Make, redis_db: redis.Redis
) -> None:
    """Bullhorn plans 3 searches per query; 6 matches in pages of 2 take 3 ClientContact
    pages, and the session login is a request too: 6 requests for 3 planned tokens. Under a
    budget of 5 per second the old guard sent all 6 and drew the CRM's 429; now the 6th is
    deferred unsent, and the retry (session kept: 5 requests) fits in a fresh window."""
    crowd = [
        {"id": 700 + i, "name": f"Person {i}", "phone": "+14155550000", "createdDate": 1}
        for i in range(6)
    ]
    h = make_harness("bullhorn", crowd)
    h.vendor.set_rate_limit((5, 1.0))
    svc = service(h, redis_db, rate_limit="5/1", rate_reserve=0.0, page_size=2)
    result, deferred = until_done(svc, LookupRequest("+14155550000"))
    assert result["successful"] and len(result["matchedContactInfo"]) == 6
    assert h.vendor.rate_limited == 0  # never a request the budget did not cover
    assert deferred >= 1  # the 6th request was deferred before it was sent


def test_shared_budget_follows_the_vendors_announced_limit(
    make_harness: Make, redis_db: redis.Redis
) -> None:
    """Issue 11's figures: a Clio stand-in announcing 3 requests per window, four concurrent
    lookups of two queries each; the connection's own budget is Clio's default 50/60. The
    budget followed only 429s, and after each reset the workers burst again."""
    people = [
        {"id": f"p{i}", "name": f"Person {i}", "phone": f"(415) 555-01{i}0", "createdDate": 1}
        for i in range(4)
    ]
    h = make_harness("clio", people)
    h.vendor.set_rate_limit((3, 1.0))
    svc = service(h, redis_db, formats="(***) ***-****")
    warm, _ = until_done(svc, LookupRequest("+14155559999"))  # learns the vendor's figures
    assert warm["successful"] and h.vendor.rate_limited == 0
    results: list[Any] = [None] * 4
    barrier = threading.Barrier(4)

    def one(i: int) -> None:
        barrier.wait()
        results[i] = until_done(svc, LookupRequest(f"+141555501{i}0"))

    threads = [threading.Thread(target=one, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(DEADLINE_S + 5)
    assert [r[0]["matchedContactInfo"][0]["name"] for r in results] == [
        f"Person {i}" for i in range(4)
    ]
    assert h.vendor.rate_limited == 0
    assert h.vendor.requests == 2 + 4 * 2


@pytest.mark.parametrize("remaining", [0, 1])
def test_vendor_remaining_defers_before_a_request_is_sent(
    make_harness: Make, redis_db: redis.Redis, remaining: int
) -> None:
    """After a response announcing ``remaining`` requests until its reset, a lookup needing
    more than that is deferred until the reset, unsent."""
    h = make_harness("clio")
    h.vendor.set_rate_limit((2 + remaining, 30.0))
    svc = service(h, redis_db, formats="(***) ***-****")
    first = svc.lookup(CONNECTION, LookupRequest("+14155550111"))  # two queries: 2 requests
    assert first["successful"]
    sent = h.vendor.requests
    with pytest.raises(RateLimited) as info:
        svc.lookup(CONNECTION, LookupRequest("+14155550112"))
    assert h.vendor.requests == sent and h.vendor.rate_limited == 0
    assert info.value.retry_after_s is not None and 20 < info.value.retry_after_s <= 31


def test_our_own_deferral_does_not_hold_every_worker_off(
    make_harness: Make, redis_db: redis.Redis
) -> None:
    """A request past the prepaid ones that the budget cannot cover defers this lookup only:
    the CRM said nothing, so no hold-off is set for the others."""
    crowd = [
        {"id": 800 + i, "name": f"P {i}", "phone": "+14155550000", "createdDate": 1}
        for i in range(6)
    ]
    h = make_harness("bullhorn", crowd)
    svc = service(h, redis_db, rate_limit="5/30", rate_reserve=0.0, page_size=2)
    with pytest.raises(RateLimited) as info:
        svc.lookup(CONNECTION, LookupRequest("+14155550000"))  # 6 requests, 5 tokens
    assert info.value.status_code is None and h.vendor.rate_limited == 0
    assert not [k for k in redis_db.keys("*") if k.endswith(b":block")]


def test_the_call_pop_reserve_holds_in_the_vendors_count(
    make_harness: Make, redis_db: redis.Redis
) -> None:
    """A batch following the vendor's announced count leaves the reserve's share of it to
    call pops: with Clio announcing 10 requests per window and the default 20% reserve,
    re-lookups stop with 2 of the vendor's 10 left, and a call pop still gets one of them
    at once (bench 5: a batch that drained the vendor's count deferred call pops to its
    reset)."""
    h = make_harness("clio")
    h.vendor.set_rate_limit((10, 30.0))
    svc = service(h, redis_db, rate_limit="100/30")  # our own log is never the tighter one
    relookups = 0
    with pytest.raises(RateLimited) as info:
        for i in range(20):
            svc.lookup(CONNECTION, LookupRequest(f"+1415555{1000 + i:04d}", purpose="relookup"))
            relookups += 1
    assert relookups == 8  # one request each: 10 announced, 2 kept for call pops
    assert info.value.retry_after_s is not None and 20 < info.value.retry_after_s <= 31
    sent = h.vendor.requests
    pop = svc.lookup(CONNECTION, LookupRequest("+14155550200", purpose="call_pop"))
    assert pop["successful"] and h.vendor.requests == sent + 1
    assert h.vendor.rate_limited == 0
