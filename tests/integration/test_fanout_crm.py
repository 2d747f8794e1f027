"""Fan-out against real parts: a lookup's CRM searches in flight together, over real HTTP to
the Insightly simulator (4 searches per term: 12 for E.164 and two formats), through the real
LookupService, cache and shared rate limiter on a real Redis.

- the spec's order (E.164 first, then formats) and de-duplication by id survive answers
  that arrive in another order;
- never more requests in flight than the connection's ``max_concurrency`` (the simulator
  counts them), for one lookup and for several lookups of one worker process together;
- never over the shared budget: 0 answers of 429 from a simulator enforcing the same limit;
- one failed search fails the lookup as a whole, and nothing partial is cached.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
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
from contact_lookup.model.errors import CRMUnavailable, RateLimited
from crmsim.base import SimRequest, SimResponse
from crmsim.insightly import InsightlySimulator

E164 = "+14155550100"
FORMATS = "(***) ***-****, ***-***-****"
FORMAT_1, FORMAT_2 = "(415) 555-0100", "415-555-0100"
TIMEOUT_S = 10.0

CONTACTS: list[dict[str, Any]] = [
    # Found by the E.164 search (PHONE) and by format 1 (PHONE_MOBILE): once, first.
    {"name": "Ada Both", "phones": [E164, FORMAT_1], "type": "Contact"},
    {"name": "Bea Lead", "phone": FORMAT_1, "type": "Lead"},
    {"name": "Cy Dashes", "phone": FORMAT_2, "type": "Contact"},
    {"name": "Dee Lead", "phone": E164, "type": "Lead"},
]
EXPECTED_ORDER = ["Ada Both", "Dee Lead", "Bea Lead", "Cy Dashes"]


class E164AnsweredLast(InsightlySimulator):
    """Holds every E.164 search until all 8 format searches have been answered, so the
    answers reach the connector in the opposite of the spec's order."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.format_answers = 0
        self.formats_done = threading.Condition()

    def route(self, req: SimRequest) -> SimResponse:
        if req.arg("field_value") == E164:
            with self.formats_done:
                assert self.formats_done.wait_for(lambda: self.format_answers >= 8, TIMEOUT_S)
            return super().route(req)
        resp = super().route(req)
        with self.formats_done:
            self.format_answers += 1
            self.formats_done.notify_all()
        return resp


@pytest.fixture
def started() -> Iterator[list[InsightlySimulator]]:
    sims: list[InsightlySimulator] = []
    yield sims
    for sim in sims:
        sim.stop()


def service_for(
    sim: InsightlySimulator, client: redis.Redis, *, limiter: bool = False, **table: Any
) -> LookupService:
    config = parse_config(
        {"connections": {"crm": {**sim.connection(), "formats": FORMATS, **table}}}, Path(".")
    )
    return LookupService(
        config,
        ContactCache(client, ttl_s=60),
        ConnectorFactory(env=sim.env(), timeout_s=TIMEOUT_S),
        limiter=RateLimiter(client) if limiter else None,
    )


def names(result: dict[str, Any]) -> list[str]:
    return [c["name"] for c in result["matchedContactInfo"]]


def test_spec_order_and_dedupe_survive_answers_in_another_order(
    started: list[InsightlySimulator], redis_client: redis.Redis
) -> None:
    sim = E164AnsweredLast(CONTACTS).start()
    started.append(sim)
    result = service_for(sim, redis_client).lookup("crm", LookupRequest(E164))
    assert result["successful"] is True
    assert names(result) == EXPECTED_ORDER
    assert sim.max_in_flight >= 5  # the 4 held E.164 searches and format searches together
    assert sim.requests == 12


def test_in_flight_never_exceeds_max_concurrency_per_lookup_and_per_process(
    started: list[InsightlySimulator], redis_client: redis.Redis
) -> None:
    sim = InsightlySimulator(CONTACTS, latency_s=0.05).start()
    started.append(sim)
    service = service_for(sim, redis_client, max_concurrency=3)
    assert names(service.lookup("crm", LookupRequest(E164))) == EXPECTED_ORDER
    assert sim.max_in_flight == 3  # reached (fan-out is used), never passed

    sim.reset_counters()
    errors: list[BaseException] = []

    def lookup(number: str) -> None:
        try:
            service.lookup("crm", LookupRequest(number, force_refresh=True))
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=lookup, args=(n,)) for n in (E164, "+14155550199")]
    for t in threads:
        t.start()
    for t in threads:
        t.join(TIMEOUT_S * 3)
    assert errors == []
    assert sim.requests == 24 and sim.max_in_flight == 3  # two lookups, one bound


def test_fan_out_stays_within_the_shared_budget(
    started: list[InsightlySimulator], redis_client: redis.Redis
) -> None:
    # The CRM allows 24 requests per 30 s and the connection says so: two lookups of 12 fit,
    # a third must be deferred by the limiter before any request, never answered 429.
    sim = InsightlySimulator(CONTACTS, rate_limit=(24, 30.0)).start()
    started.append(sim)
    service = service_for(sim, redis_client, limiter=True, rate_limit="24/30", rate_reserve=0)
    outcomes: list[str] = []
    lock = threading.Lock()

    def lookup(number: str) -> None:
        try:
            result = service.lookup("crm", LookupRequest(number))
            outcome = "ok" if result["successful"] else "failed"
        except RateLimited:
            outcome = "deferred"
        with lock:
            outcomes.append(outcome)

    numbers = (E164, "+14155550198", "+14155550197")
    threads = [threading.Thread(target=lookup, args=(n,)) for n in numbers]
    for t in threads:
        t.start()
    for t in threads:
        t.join(TIMEOUT_S * 3)
    assert sorted(outcomes) == ["deferred", "ok", "ok"]
    assert sim.requests == 24
    assert sim.rate_limited == 0


def test_one_failed_search_fails_the_lookup_and_nothing_partial_is_cached(
    started: list[InsightlySimulator], redis_client: redis.Redis
) -> None:
    sim = InsightlySimulator(CONTACTS).start()
    started.append(sim)
    service = service_for(sim, redis_client)
    request = LookupRequest(E164)
    key = service.prepare("crm", request).cache_key
    sim.inject("503")  # one of the 12 searches; the other 11 find all four contacts
    with pytest.raises(CRMUnavailable):
        service.lookup("crm", request)
    assert redis_client.exists(key) == 0
    assert sim.requests <= 12

    # The same lookup without the fault: its full answer is what gets cached.
    assert names(service.lookup("crm", request)) == EXPECTED_ORDER
    assert redis_client.exists(key) == 1
