"""Insightly specifics: four field searches per query, skip/top paging, Basic auth, and a
rate limit with no documented reset."""

from __future__ import annotations

import base64
from collections.abc import Callable
from typing import Any

import pytest
import requests

from contact_lookup.connectors.insightly import InsightlyConnector
from contact_lookup.model.errors import RateLimited
from crmsim.insightly import InsightlySimulator
from tests.contract.harness import SECRET, Harness

Make = Callable[..., Harness]
FOUR_SEARCHES = [
    ("contacts", "PHONE"),
    ("contacts", "PHONE_MOBILE"),
    ("leads", "PHONE"),
    ("leads", "MOBILE"),
]


def searches(h: Harness) -> list[tuple[str, str, str]]:
    """(entity, field_name, field_value) of every search the simulator answered."""
    assert isinstance(h.vendor, InsightlySimulator)
    return h.vendor.searches


def test_each_query_searches_contact_phone_and_mobile_and_lead_phone_and_mobile(
    make_harness: Make,
) -> None:
    h = make_harness("insightly")
    outcome = h.find("+14155550123", "***-***-****")
    assert [c["name"] for c in outcome.contacts] == ["Grace Hopper"]
    # Sent concurrently (fan-out): every search once, in any order.
    assert sorted(searches(h)) == sorted(
        (e, f, q) for q in ("+14155550123", "415-555-0123") for e, f in FOUR_SEARCHES
    )


@pytest.mark.parametrize(
    ("number", "name", "kind"),
    [
        ("+14155550199", "Edsger Dijkstra", "Contact"),  # PHONE_MOBILE
        ("+14155550177", "Alan Turing", "Lead"),  # Leads PHONE
        ("+14155550144", "Katherine Johnson", "Lead"),
    ],  # Leads MOBILE
)
def test_every_phone_field_finds_its_record(
    make_harness: Make, number: str, name: str, kind: str
) -> None:
    found = [
        (c["name"], c["type"], c["phone"])
        for c in make_harness("insightly").find(number).contacts
        if c["name"] == name
    ]
    assert found == [(name, kind, number)]


def test_skip_and_top_pages_are_followed(make_harness: Make) -> None:
    seeds: list[dict[str, Any]] = [
        {"id": f"p{i}", "name": f"Person {i}", "phone": "+14155550000"} for i in range(5)
    ]
    h = make_harness("insightly", seeds)
    c = h.connector()
    assert isinstance(c, InsightlyConnector)
    c.page_limit = 2
    assert len(c.find(["+14155550000"]).contacts) == 5
    # Contacts/PHONE: skip 0, 2, 4 (a short page ends it); the other three: one empty page.
    assert len(searches(h)) == 6


def test_base_url_may_carry_the_api_version(make_harness: Make) -> None:
    h = make_harness("insightly")
    c = h.connector(base_url=h.vendor.url + "/v3.1/")
    assert [x["name"] for x in c.find(["(415) 555-0100"]).contacts] == ["Ada Lovelace"]


def test_basic_auth_is_the_api_key_with_an_empty_password(make_harness: Make) -> None:
    sim = make_harness("insightly").vendor
    url = sim.url + "/v3.1/Contacts/Search"
    params = {"field_name": "PHONE", "field_value": "(415) 555-0100"}
    basic = base64.b64encode(f"{SECRET}:".encode()).decode()
    ok = requests.get(url, params=params, headers={"Authorization": f"Basic {basic}"}, timeout=2)
    assert ok.status_code == 200 and ok.json()[0]["FIRST_NAME"] == "Ada"
    assert ok.json()[0]["DATE_CREATED_UTC"] == "2021-03-04 10:00:00"
    bearer = requests.get(
        url, params=params, headers={"Authorization": f"Bearer {SECRET}"}, timeout=2
    )
    assert bearer.status_code == 401 and "denied" in bearer.json()["Message"]


def test_daily_limit_headers_and_429_without_a_documented_wait(make_harness: Make) -> None:
    h = make_harness("insightly")
    h.vendor.set_rate_limit((1000, 86400))
    state = h.find("+14155550177").rate_limit
    assert state is not None and state.amount == 1000 and state.reset is None
    h.vendor.set_rate_limit((1, 86400))
    with pytest.raises(RateLimited) as info:
        h.find("+14155550177")  # four searches: the second is over the limit
    assert info.value.retry_after_s is None
