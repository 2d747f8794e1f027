"""Pipedrive specifics: the contains-match plan, bounded person reads, cursor pagination,
header-only auth and the seconds-left reset."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from typing import Any

import pytest
import requests

from contact_lookup.connectors.pipedrive import PipedriveConnector
from contact_lookup.model import phone
from contact_lookup.model.errors import AuthRejected, RateLimited
from crmsim.base import SimResponse, WindowState
from crmsim.pipedrive import LIST_PATH, SEARCH_PATH, PipedriveSimulator
from tests.contract.harness import SECRET, Harness

SHARED = "+14155550000"
Make = Callable[..., Harness]


def crowd(count: int) -> list[dict[str, Any]]:
    return [
        {"id": f"p{i}", "name": f"Person {i:02d}", "phone": SHARED, "createdDate": "2020-01-01"}
        for i in range(count)
    ]


def person_reads(h: Harness) -> int:
    """Requests that read persons (batched list or one by one), not searches."""
    return sum(
        n
        for path, n in h.vendor.by_path.items()
        if path.startswith("/api/v2/persons") and path != SEARCH_PATH
    )


def connector(h: Harness, **overrides: Any) -> PipedriveConnector:
    built = h.connector(**overrides)
    assert isinstance(built, PipedriveConnector)
    return built


# ----- plan ------------------------------------------------------------------------------------
def test_plan_searches_national_digits_and_drops_variants_that_contain_another(
    make_harness: Make,
) -> None:
    c = connector(make_harness("pipedrive"))
    planned = c.plan(["+14155550100", "(415) 555-0100", "+1 (415) 555-0100", "4155550100"])
    assert planned == ["4155550100", "(415) 555-0100"]


def test_national_digits_find_a_number_stored_without_its_plus(make_harness: Make) -> None:
    h = make_harness("pipedrive", [{"id": "x", "name": "No Plus", "phone": "14155550100"}])
    assert [c["phone"] for c in h.find("+14155550100").contacts] == ["14155550100"]
    assert h.vendor.queries == ["4155550100"]


def test_extension_and_exact_match_keep_every_query_and_search_exactly(
    make_harness: Make,
) -> None:
    seeds = [
        {"id": "r", "name": "Reception", "phone": "102"},
        {"id": "s", "name": "Somebody", "phone": "+14155551020"},
    ]
    h = make_harness("pipedrive", seeds)
    assert [c["name"] for c in connector(h).find(["102"]).contacts] == ["Reception"]
    exact = connector(h, exact_match=True)
    queries = phone.queries("+14155551020", "(***) ***-****")
    assert exact.plan(queries) == queries
    assert [c["name"] for c in exact.find(queries).contacts] == ["Somebody"]


# ----- person reads ----------------------------------------------------------------------------
def test_a_person_found_by_two_queries_is_read_once(make_harness: Make) -> None:
    h = make_harness("pipedrive")
    outcome = h.find("+14155550123", "***-***-****")  # Grace: both queries find her
    assert len(outcome.queries) == 2 and h.vendor.by_path[SEARCH_PATH] == 2
    assert person_reads(h) == 1


def test_every_match_gets_its_creation_date_in_batches_of_100(make_harness: Make) -> None:
    """Issue 11: past 10 matches some persons came back without createdDate (the old cap),
    the earliest-created resolver refused, and that incomplete answer was cached."""
    h = make_harness("pipedrive", crowd(150))
    c = connector(h)
    c.page_limit = 500
    first = c.find([SHARED])
    assert len(first.contacts) == 150 and first.complete
    assert all(x["createdDate"] == "2020-01-01T00:00:00Z" for x in first.contacts)
    assert h.vendor.by_path[LIST_PATH] == 2  # 100 + 50 ids, not 150 single reads
    # Same connection: every date now comes from the cache.
    connector(h).find([SHARED])
    assert h.vendor.by_path[LIST_PATH] == 2


def test_person_cache_expires(make_harness: Make) -> None:
    h = make_harness("pipedrive")
    for _ in range(2):
        c = connector(h)
        c.person_ttl_s = 0.0
        c.find(["+14155550177"])
    assert person_reads(h) == 2  # Alan and Barbara in one read, read again once expired


# ----- pagination ------------------------------------------------------------------------------
def test_cursor_pages_are_followed(make_harness: Make) -> None:
    h = make_harness("pipedrive", crowd(5))
    c = connector(h)
    c.page_limit = 2
    assert len(c.find([SHARED]).contacts) == 5
    assert h.vendor.by_path[SEARCH_PATH] == 3


# ----- auth ------------------------------------------------------------------------------------
def test_token_goes_in_a_header_never_the_url(make_harness: Make) -> None:
    sim = make_harness("pipedrive").vendor
    params = {"term": "4155550177", "fields": "phone"}
    in_url = requests.get(sim.url + SEARCH_PATH, params={**params, "api_token": SECRET}, timeout=2)
    assert in_url.status_code == 401
    assert in_url.json()["errorCode"] == 401
    for headers in ({"x-api-token": SECRET}, {"Authorization": f"Bearer {SECRET}"}):
        assert (
            requests.get(
                sim.url + SEARCH_PATH, params=params, headers=headers, timeout=2
            ).status_code
            == 200
        )


def test_oauth_access_token_is_sent_as_bearer(make_harness: Make) -> None:
    h = make_harness("pipedrive", bearer_only=True)
    with pytest.raises(AuthRejected):
        h.find("+14155550177")  # the default: x-api-token, which OAuth tokens are not
    assert h.sim is not None
    oauth = dataclasses.replace(h.connection(), auth="oauth2")  # the token store's credential
    built = PipedriveConnector(oauth, secret=h.sim.token, session=requests.Session())
    names = [c["name"] for c in built.find(["+14155550177"]).contacts]
    assert sorted(names) == ["Alan Turing", "Barbara Liskov"]


# ----- rate limit ------------------------------------------------------------------------------
def test_reset_seconds_left_become_epoch_seconds(make_harness: Make) -> None:
    h = make_harness("pipedrive")
    h.vendor.set_rate_limit((50, 2))
    before = time.time()
    state = h.find("+14155550177").rate_limit
    assert state is not None and state.amount == 50 and state.reset is not None
    assert before < state.reset <= time.time() + 2


class NoRetryAfter(PipedriveSimulator):
    def rate_limit_response(self, state: WindowState) -> SimResponse:
        return SimResponse(429, {"success": False, "error": "Request over limit", "errorCode": 429})


@pytest.mark.parametrize("sim_class", [PipedriveSimulator, NoRetryAfter])
def test_over_limit_waits_what_pipedrive_says(
    make_harness: Make, sim_class: type[PipedriveSimulator]
) -> None:
    h = make_harness("pipedrive", sim_class=sim_class)
    h.vendor.set_rate_limit((1, 20))
    with pytest.raises(RateLimited) as info:
        h.find("+14155550177")  # one search, then the person read is over the limit
    # Retry-After where sent, else x-ratelimit-reset (seconds left): both ~20 s.
    assert info.value.retry_after_s is not None and 18 <= info.value.retry_after_s <= 20


class DailyBudgetSpent(PipedriveSimulator):
    """Pipedrive's token-based daily budget, spent: 429 with the daily header at 0."""

    def rate_limit_response(self, state: WindowState) -> SimResponse:
        return SimResponse(
            429,
            {"success": False, "error": "Request over limit", "errorCode": 429},
            {"x-daily-ratelimit-token-remaining": "0", "Retry-After": "1"},
        )


def test_spent_daily_budget_holds_off_for_an_hourly_probe(make_harness: Make) -> None:
    h = make_harness("pipedrive", sim_class=DailyBudgetSpent)
    h.vendor.set_rate_limit((1, 20))
    with pytest.raises(RateLimited) as info:
        h.find("+14155550177")  # the search passes, the person read is refused
    assert info.value.retry_after_s == 3600.0  # not the burst window's second
    assert "daily" in info.value.message


class PostPutCountSpent(PipedriveSimulator):
    """A burst-window 429 on an api_token account whose POST/PUT fair-usage count is spent
    (``x-daily-requests-left: 0``, pipedrive.readme.io "Rate limiting": POST/PUT only)."""

    def rate_limit_response(self, state: WindowState) -> SimResponse:
        return SimResponse(
            429,
            {"success": False, "error": "Request over limit", "errorCode": 429},
            {"x-daily-requests-left": "0", "Retry-After": "1"},
        )


def test_the_post_put_daily_count_does_not_hold_off_searches(make_harness: Make) -> None:
    h = make_harness("pipedrive", sim_class=PostPutCountSpent)
    h.vendor.set_rate_limit((1, 20))
    with pytest.raises(RateLimited) as info:
        h.find("+14155550177")
    assert info.value.retry_after_s == 1.0  # the burst window's Retry-After, not an hour
    assert "daily" not in info.value.message
