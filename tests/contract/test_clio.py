"""Clio specifics: pagination through ``meta.paging.next``, fields, dates, rate-limit headers."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import pytest
import requests

from contact_lookup.connectors.clio import ClioConnector
from contact_lookup.model.errors import CRMUnavailable, RateLimited
from crmsim.base import SimRequest
from crmsim.clio import CONTACTS_PATH, ClioSimulator
from tests.contract.harness import SECRET, Harness

SHARED = "+14155550000"
Make = Callable[..., Harness]


def crowd(count: int) -> list[dict[str, Any]]:
    return [
        {"id": f"p{i}", "name": f"Person {i:02d}", "phone": SHARED, "createdDate": "2020-01-01"}
        for i in range(count)
    ]


def paged(h: Harness, page_limit: int, max_pages: int = ClioConnector.max_pages) -> ClioConnector:
    connector = h.connector()
    assert isinstance(connector, ClioConnector)
    connector.page_limit, connector.max_pages = page_limit, max_pages
    return connector


def test_pages_are_followed_through_the_next_link(make_harness: Make) -> None:
    h = make_harness("clio", crowd(5))
    outcome = paged(h, 2).find([SHARED])
    assert [c["name"] for c in outcome.contacts] == [f"Person {i:02d}" for i in range(5)]
    assert h.vendor.by_path[CONTACTS_PATH] == 3  # pages of 2, 2 and 1


def test_pagination_stops_at_max_pages(make_harness: Make) -> None:
    h = make_harness("clio", crowd(5))
    outcome = paged(h, 2, max_pages=2).find([SHARED])
    assert len(outcome.contacts) == 4 and not outcome.complete
    assert h.vendor.by_path[CONTACTS_PATH] == 2


class ForeignNextLink(ClioSimulator):
    def next_link(self, req: SimRequest, host: str, token: str) -> str:
        return f"http://crm.example.invalid{req.path}?page_token={token}"


def test_next_link_to_another_host_is_not_followed(make_harness: Make) -> None:
    h = make_harness("clio", crowd(3), sim_class=ForeignNextLink)
    with pytest.raises(CRMUnavailable, match="another host"):
        paged(h, 2).find([SHARED])
    assert h.vendor.requests == 1  # the bearer token never went to the other host


def test_simulator_returns_only_the_fields_asked_for(make_harness: Make) -> None:
    sim = make_harness("clio").vendor
    auth = {"Authorization": f"Bearer {SECRET}"}
    bare = requests.get(
        sim.url + CONTACTS_PATH, params={"query": "+14155550177"}, headers=auth, timeout=2
    ).json()
    # Alan and Barbara by their number, Ruth by her custom field (Clio's wildcard query).
    assert [set(c) for c in bare["data"]] == [{"id", "etag"}] * 3
    fields = "id,created_at,company{name}"
    asked = requests.get(
        sim.url + CONTACTS_PATH,
        params={"query": "(415) 555-0100", "fields": fields},
        headers=auth,
        timeout=2,
    ).json()
    # 10:00Z written in the account's -08:00 zone, as Clio writes it.
    assert asked["data"] == [
        {"id": 1001, "created_at": "2021-03-04T02:00:00-08:00", "company": {"name": "Engines Ltd"}}
    ]


def test_wrong_token_gets_clios_401_body(make_harness: Make) -> None:
    sim = make_harness("clio").vendor
    resp = requests.get(
        sim.url + CONTACTS_PATH, headers={"Authorization": "Bearer nope"}, timeout=2
    )
    assert resp.status_code == 401
    assert resp.json()["error"] == "invalid_token"


def test_rate_limit_headers_and_retry_after(make_harness: Make) -> None:
    h = make_harness("clio")
    h.vendor.set_rate_limit((1, 30))
    before = time.time()
    state = h.find("+14155550177").rate_limit
    assert state is not None and (state.amount, state.remaining) == (1, 0)
    assert state.reset is not None and before + 29 <= state.reset <= time.time() + 31
    with pytest.raises(RateLimited) as info:
        h.find("+14155550177")
    assert info.value.retry_after_s is not None and 29 <= info.value.retry_after_s <= 30
    assert info.value.rate_limit is not None and info.value.rate_limit.remaining == 0


def test_an_answer_cut_at_the_page_cap_is_not_cached(
    make_harness: Make, redis_db: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Issue 11, item 3: a knowingly incomplete answer is returned but never cached."""
    from contact_lookup.core.request import LookupRequest

    h = make_harness("clio", crowd(5))
    monkeypatch.setattr(ClioConnector, "page_limit", 2)
    monkeypatch.setattr(ClioConnector, "max_pages", 2)
    svc = h.service(redis_db)
    cut = svc.lookup("contract", LookupRequest(SHARED))
    assert len(cut["matchedContactInfo"]) == 4
    assert svc.cache.get(svc.prepare("contract", LookupRequest(SHARED)).cache_key) is None
    monkeypatch.setattr(ClioConnector, "max_pages", 3)
    whole = svc.lookup("contract", LookupRequest(SHARED))
    assert len(whole["matchedContactInfo"]) == 5
    cached = svc.cache.get(svc.prepare("contract", LookupRequest(SHARED)).cache_key)
    assert cached is not None and len(cached) == 5
