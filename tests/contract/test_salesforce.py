"""Salesforce: the connector against its simulator (SOSL, 403 limit, Sforce-Limit-Info)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
import requests

from contact_lookup.connectors.registry import connector_class
from contact_lookup.connectors.salesforce import SalesforceConnector, escape_sosl
from contact_lookup.model.config import Connection
from contact_lookup.model.errors import AuthRejected, BadQuery, RateLimited, RateLimitState
from contact_lookup.model.trace import DebugTrace
from crmsim.salesforce import DAILY_ALLOCATION, SalesforceSimulator
from tests.contract.harness import sim_connection

TOKEN = "00Dsim!AQ4AQFh3-salesforce-session"
SEARCH = "/services/data/v59.0/search/"
SEED: list[dict[str, Any]] = [
    {
        "id": "003A01",
        "name": "Ada Lovelace",
        "phone": "(415) 555-0100",
        "type": "Contact",
        "title": "Analyst",
        "company": "Engines Ltd",
        "email": "ada@example.com",
        "createdDate": "2019-07-01T08:00:00+02:00",
        "mostRecentActivityDate": 1614852000,
    },
    {
        "id": "00QA02",
        "name": "Alan Turing",
        "phone": "+1 415 555 0123",
        "type": "Lead",
        "company": "Bletchley",
        "createdDate": "2021-03-04T10:00:00.123Z",
    },
    {"id": "003A03", "name": "Margaret London", "phone": "020 7946 0958", "type": "Contact"},
    {
        "id": "003A04",
        "name": "Margaret Intl",
        "phones": ["x", "+44 20 7946 0958"],
        "type": "Contact",
    },
    {"id": "003A05", "name": "Reception", "phone": "102", "type": "Contact"},
]


@pytest.fixture(scope="module")
def server() -> Iterator[SalesforceSimulator]:
    with SalesforceSimulator(SEED, token=TOKEN) as running:
        yield running


@pytest.fixture
def sim(server: SalesforceSimulator) -> SalesforceSimulator:
    server.set_rate_limit(server.default_rate_limit)
    server.faults.clear()
    server.reset_counters()
    return server


def connection(sim: SalesforceSimulator, **options: Any) -> Connection:
    return sim_connection(sim, "sf", **options)


def connector(
    sim: SalesforceSimulator,
    *,
    trace: DebugTrace | None = None,
    secret: str | None = None,
    **options: Any,
) -> SalesforceConnector:
    conn = connection(sim, **options)
    return SalesforceConnector(
        conn, secret=secret or conn.secret(sim.env()), timeout_s=5, trace=trace
    )


def ids(contacts: list[dict[str, Any]]) -> list[str]:
    return sorted(c["id"] for c in contacts)


def sosl_get(sim: SalesforceSimulator, q: str, token: str = TOKEN) -> requests.Response:
    return requests.get(
        sim.url + SEARCH, params={"q": q}, timeout=5, headers={"Authorization": f"Bearer {token}"}
    )


def test_registry_and_simulator_connection_build_this_connector(sim: SalesforceSimulator) -> None:
    assert connector_class("salesforce") is SalesforceConnector
    assert connection(sim).secret(sim.env()) == TOKEN


def test_phone_search_ignores_punctuation_and_the_nanp_prefix(sim: SalesforceSimulator) -> None:
    c = connector(sim)
    assert ids(c.find(["+14155550100"]).contacts) == ["003A01"]
    assert ids(c.find(["+14155550123"]).contacts) == ["00QA02"]
    # A UK number in E.164 finds the international spelling, not the national one.
    assert ids(c.find(["+442079460958"]).contacts) == ["003A04"]
    assert ids(c.find(["102"]).contacts) == ["003A05"]
    assert c.find(["+14155550999"]).contacts == []


def test_plan_sends_one_query_per_distinct_number(sim: SalesforceSimulator) -> None:
    queries = ["+14155550100", "(415) 555-0100", "415-555-0100", "415.555.0100"]
    c = connector(sim)
    assert c.plan(queries) == ["+14155550100"]
    assert c.plan(["102", "+14155550100"]) == ["102", "+14155550100"]
    outcome = c.find(queries)
    assert ids(outcome.contacts) == ["003A01"]
    # The term is the digits, as Salesforce's own phone sample searches (not the E.164 '+').
    assert sim.by_path[SEARCH] == 1 and sim.queries == ["4155550100"]


def test_reserved_characters_are_escaped(sim: SalesforceSimulator) -> None:
    assert escape_sosl("+1 (415) 555-0100") == "\\+1 \\(415\\) 555\\-0100"
    returning = "RETURNING Contact(Id)"
    assert sosl_get(sim, f"FIND {{+14155550100}} IN PHONE FIELDS {returning}").status_code == 400
    ok = sosl_get(sim, f"FIND {{\\+14155550100}} IN PHONE FIELDS {returning}")
    assert [r["Id"] for r in ok.json()["searchRecords"]] == ["003A01"]
    # And the connector, given a formatted number, sends a search the simulator accepts.
    assert ids(connector(sim).find(["(415) 555-0100"]).contacts) == ["003A01"]


def test_contact_and_lead_fields_and_dates_normalised(sim: SalesforceSimulator) -> None:
    [ada] = connector(sim).find(["+14155550100"]).contacts
    assert ada == {
        "id": "003A01",
        "name": "Ada Lovelace",
        "phone": "(415) 555-0100",  # the stored value that was verified as the number
        "type": "Contact",
        "title": "Analyst",
        "company": "Engines Ltd",
        "email": "ada@example.com",
        "createdDate": "2019-07-01T06:00:00Z",
        "mostRecentActivityDate": "2021-03-04T10:00:00Z",
        "additionalInfo": None,
    }
    [alan] = connector(sim).find(["+14155550123"]).contacts
    assert (alan["type"], alan["company"]) == ("Lead", "Bletchley")
    assert alan["createdDate"] == "2021-03-04T10:00:00.123Z"


def test_simulator_writes_salesforce_datetimes(sim: SalesforceSimulator) -> None:
    resp = sosl_get(
        sim, "FIND {4155550100} IN PHONE FIELDS RETURNING Contact(Id,CreatedDate,Account.Name)"
    )
    [record] = resp.json()["searchRecords"]
    assert record["CreatedDate"] == "2019-07-01T06:00:00.000+0000"
    assert record["Account"]["Name"] == "Engines Ltd"
    assert record["attributes"]["type"] == "Contact"


def test_sforce_limit_info_is_parsed_from_every_response(sim: SalesforceSimulator) -> None:
    c = connector(sim)
    c.find(["+14155550100"])
    outcome = c.find(["+14155550123"])
    assert outcome.rate_limit == RateLimitState(
        remaining=DAILY_ALLOCATION - 2, amount=DAILY_ALLOCATION
    )
    rejected = sosl_get(sim, "FIND {102} RETURNING Contact(Id)", token="wrong")
    assert rejected.headers["Sforce-Limit-Info"] == f"api-usage=3/{DAILY_ALLOCATION}"


def test_403_request_limit_exceeded_is_rate_limited(sim: SalesforceSimulator) -> None:
    sim.set_rate_limit((2, 86_400.0))
    c = connector(sim)
    assert c.find(["+14155550100"]).rate_limit == RateLimitState(remaining=1, amount=2)
    assert c.find(["+14155550123"]).rate_limit == RateLimitState(remaining=0, amount=2)
    with pytest.raises(RateLimited) as info:
        c.find(["102"])
    err = info.value
    assert err.status_code == 403
    assert err.retry_after_s == 3600.0  # TotalRequests: rolling day, no reset: hourly probe
    assert "REQUEST_LIMIT_EXCEEDED" in err.message
    assert err.rate_limit == RateLimitState(remaining=0, amount=2)


def test_invalid_session_is_auth_rejected(sim: SalesforceSimulator) -> None:
    with pytest.raises(AuthRejected) as info:
        connector(sim, secret="00Dexpired").find(["+14155550100"])
    assert info.value.status_code == 401
    assert "INVALID_SESSION_ID" in info.value.message


def test_error_array_mapping() -> None:
    c = SalesforceConnector(
        Connection(name="sf", crm="salesforce", base_url="http://unused.invalid"), secret="x"
    )

    def resp(status: int, code: str, message: str = "m") -> requests.Response:
        r = requests.Response()
        r.status_code = status
        r._content = json.dumps([{"message": message, "errorCode": code}]).encode()
        return r

    with pytest.raises(BadQuery):
        c.check(resp(400, "MALFORMED_SEARCH"))
    with pytest.raises(AuthRejected):
        c.check(resp(403, "API_DISABLED_FOR_ORG"))
    with pytest.raises(RateLimited):
        c.check(resp(403, "REQUEST_LIMIT_EXCEEDED"))
    # The two published variants (tests/contract/fixtures/SOURCES.md): total vs concurrent.
    waits = {}
    for message in (
        "TotalRequests Limit exceeded.",
        "ConcurrentRequests (Concurrent API Requests) Limit exceeded.",
    ):
        with pytest.raises(RateLimited) as info:
            c.check(resp(403, "REQUEST_LIMIT_EXCEEDED", message))
        waits[message.split()[0]] = info.value.retry_after_s
    assert waits == {"TotalRequests": 3600.0, "ConcurrentRequests": 5.0}


def test_token_never_reaches_the_debug_trace(sim: SalesforceSimulator) -> None:
    trace = DebugTrace()
    connector(sim, trace=trace).find(["+14155550100", "102"])
    assert [e["status"] for e in trace.entries] == [200, 200]
    assert TOKEN not in repr(trace.entries)
