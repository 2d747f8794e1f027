"""HubSpot: the connector against its simulator (EQ filters, after paging, 429 policies)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
import requests

from contact_lookup.connectors.hubspot import SEARCH_PATH, HubSpotConnector
from contact_lookup.connectors.registry import connector_class
from contact_lookup.model.config import Connection
from contact_lookup.model.errors import AuthRejected, RateLimited, RateLimitState
from contact_lookup.model.trace import DebugTrace
from crmsim.hubspot import HubSpotSimulator
from tests.contract.harness import sim_connection

TOKEN = "pat-na1-0f3c9e7a-hubspot"
SEED: list[dict[str, Any]] = [
    {
        "id": "501",
        "name": "Ada Lovelace",
        "phone": "(415) 555-0100",
        "title": "Analyst",
        "company": "Engines Ltd",
        "email": "ada@example.com",
        "createdDate": "2019-07-01T08:00:00+02:00",
        "mostRecentActivityDate": 1614852000,
    },
    {
        "id": "502",
        "name": "Grace Brewster Hopper",
        "phones": ["+14155550123", "415-555-0123"],
        "createdDate": "2021-03-04T10:00:00.123Z",
    },
    {
        "id": "503",
        "name": "Alan Turing",
        "phone": "+14155550123",
        "type": "Lead",
        "createdDate": 1546300800,
    },
]
SHARED_NUMBER = "+14155550177"


@pytest.fixture(scope="module")
def server() -> Iterator[HubSpotSimulator]:
    many = [
        {"id": str(900 + i), "name": f"Switchboard {i}", "phone": SHARED_NUMBER} for i in range(12)
    ]
    with HubSpotSimulator(SEED + many, token=TOKEN) as running:
        yield running


@pytest.fixture
def sim(server: HubSpotSimulator) -> HubSpotSimulator:
    server.set_rate_limit(None)
    server.faults.clear()
    server.reset_counters()
    return server


def connection(sim: HubSpotSimulator, **options: Any) -> Connection:
    return sim_connection(sim, "hs", **options)


def connector(
    sim: HubSpotSimulator,
    *,
    trace: DebugTrace | None = None,
    secret: str | None = None,
    **options: Any,
) -> HubSpotConnector:
    conn = connection(sim, **options)
    return HubSpotConnector(conn, secret=secret or conn.secret(sim.env()), timeout_s=5, trace=trace)


def ids(contacts: list[dict[str, Any]]) -> list[str]:
    return sorted(c["id"] for c in contacts)


def response(status: int, body: Any, headers: dict[str, str] | None = None) -> requests.Response:
    resp = requests.Response()
    resp.status_code = status
    resp._content = json.dumps(body).encode()
    resp.headers.update(headers or {})
    return resp


def test_registry_and_simulator_connection_build_this_connector(sim: HubSpotSimulator) -> None:
    assert connector_class("hubspot") is HubSpotConnector
    assert connection(sim).secret(sim.env()) == TOKEN


def test_eq_matches_the_stored_string_of_phone_or_mobilephone(sim: HubSpotSimulator) -> None:
    c = connector(sim)
    assert ids(c.find(["+14155550123"]).contacts) == ["502", "503"]
    assert ids(c.find(["415-555-0123"]).contacts) == ["502"]  # Grace's mobilephone
    assert ids(c.find(["(415) 555-0100"]).contacts) == ["501"]
    assert c.find(["+14155550100"]).contacts == []  # same number, other string: no match


def test_plan_keeps_every_formatted_variant(sim: HubSpotSimulator) -> None:
    queries = ["+14155550100", "(415) 555-0100"]
    c = connector(sim)
    assert c.plan(queries) == queries
    assert ids(c.find(queries).contacts) == ["501"]
    assert sim.queries == queries


def test_contact_fields_and_dates_normalised(sim: HubSpotSimulator) -> None:
    [ada] = connector(sim).find(["(415) 555-0100"]).contacts
    assert ada == {
        "id": "501",
        "name": "Ada Lovelace",
        "phone": "(415) 555-0100",
        "type": "Contact",
        "title": "Analyst",
        "company": "Engines Ltd",
        "email": "ada@example.com",
        "createdDate": "2019-07-01T06:00:00Z",
        "mostRecentActivityDate": "2021-03-04T10:00:00Z",
        "additionalInfo": None,
    }
    [grace] = connector(sim).find(["415-555-0123"]).contacts
    assert grace["name"] == "Grace Brewster Hopper"
    assert grace["createdDate"] == "2021-03-04T10:00:00.123Z"


def test_simulator_writes_iso_dates_with_milliseconds(sim: HubSpotSimulator) -> None:
    body = {
        "filterGroups": [
            {"filters": [{"propertyName": "phone", "operator": "EQ", "value": "(415) 555-0100"}]}
        ],
        "properties": ["phone"],
    }
    resp = requests.post(
        sim.url + SEARCH_PATH, json=body, timeout=5, headers={"Authorization": f"Bearer {TOKEN}"}
    )
    [result] = resp.json()["results"]
    assert result["createdAt"] == "2019-07-01T06:00:00.000Z"
    assert result["properties"]["createdate"] == "2019-07-01T06:00:00.000Z"
    assert set(result["properties"]) == {"phone", "createdate", "hs_object_id", "lastmodifieddate"}


def test_pagination_follows_paging_next_after(sim: HubSpotSimulator) -> None:
    contacts = connector(sim, page_size=5).find([SHARED_NUMBER]).contacts
    assert ids(contacts) == [str(900 + i) for i in range(12)]
    assert sim.by_path[SEARCH_PATH] == 3  # 5 + 5 + 2


def test_pagination_stops_at_the_page_cap(sim: HubSpotSimulator) -> None:
    contacts = connector(sim, page_size=2).find([SHARED_NUMBER]).contacts
    assert len(contacts) == 10
    assert sim.by_path[SEARCH_PATH] == 5


def test_rate_limit_headers_become_the_state(sim: HubSpotSimulator) -> None:
    sim.set_rate_limit((5, 10.0))
    outcome = connector(sim).find(["(415) 555-0100"])
    assert outcome.rate_limit == RateLimitState(remaining=4, amount=5, reset=None)


def test_429_maps_to_rate_limited_with_the_interval_as_wait(sim: HubSpotSimulator) -> None:
    sim.set_rate_limit((1, 10.0))
    connector(sim).find(["(415) 555-0100"])
    with pytest.raises(RateLimited) as info:
        connector(sim).find(["(415) 555-0100"])
    err = info.value
    assert err.retry_after_s == 10.0
    assert err.status_code == 429
    assert "TEN_SECONDLY_ROLLING" in err.message
    assert err.rate_limit == RateLimitState(remaining=0, amount=1)


def test_429_body_policy_decides_the_wait_when_headers_are_missing() -> None:
    c = HubSpotConnector(
        Connection(name="hs", crm="hubspot", base_url="http://unused.invalid"), secret="x"
    )
    rate = {"status": "error", "errorType": "RATE_LIMIT", "message": "..."}
    cases = [
        (response(429, {**rate, "policyName": "SECONDLY"}), 1.0),
        # Issue 11: without headers the rolling 10 s policy waited the generic 1 s.
        (response(429, {**rate, "policyName": "TEN_SECONDLY_ROLLING"}), 10.0),
        (
            response(
                429,
                {**rate, "policyName": "DAILY"},
                {"X-HubSpot-RateLimit-Interval-Milliseconds": "10000"},
            ),
            3600.0,  # an hourly probe: the portal's midnight is unknown
        ),
        (response(429, {**rate, "policyName": "SECONDLY"}, {"Retry-After": "3"}), 3.0),
        (response(429, rate), None),
    ]
    for resp, wait in cases:
        with pytest.raises(RateLimited) as info:
            c.check(resp)
        assert info.value.retry_after_s == wait


def test_wrong_token_is_auth_rejected(sim: HubSpotSimulator) -> None:
    with pytest.raises(AuthRejected) as info:
        connector(sim, secret="pat-wrong").find(["(415) 555-0100"])
    assert info.value.status_code == 401


def test_simulator_401_body_is_hubspots(sim: HubSpotSimulator) -> None:
    resp = requests.post(
        sim.url + SEARCH_PATH, json={}, timeout=5, headers={"Authorization": "Bearer nope"}
    )
    body = resp.json()
    assert resp.status_code == 401
    assert (body["status"], body["category"]) == ("error", "INVALID_AUTHENTICATION")


def test_token_never_reaches_the_debug_trace(sim: HubSpotSimulator) -> None:
    trace = DebugTrace()
    connector(sim, trace=trace).find(["(415) 555-0100", "+14155550100"])
    assert len(trace.entries) == 2 and all(e["status"] == 200 for e in trace.entries)
    assert TOKEN not in repr(trace.entries)
