"""Bullhorn: the connector against its simulator (session login, Lucene, start/count, 429)."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import pytest
import requests

from contact_lookup.connectors.base import FindOutcome
from contact_lookup.connectors.bullhorn import BullhornConnector
from contact_lookup.connectors.registry import connector_class
from contact_lookup.model.config import Connection
from contact_lookup.model.errors import AuthRejected, RateLimited
from contact_lookup.model.trace import DebugTrace
from crmsim.base import WindowState
from crmsim.bullhorn import BullhornSimulator
from tests.contract.harness import sim_connection

SEED: list[dict[str, Any]] = [
    {
        "id": "101",
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
        "id": "102",
        "name": "Grace Hopper",
        "phones": ["+14155550123", "415-555-0123"],
        "type": "Candidate",
        "company": "Navy Labs",
        "createdDate": "2021-03-04T10:00:00.123Z",
    },
    {
        "id": "103",
        "name": "Alan Turing",
        "phone": "+14155550123",
        "type": "Lead",
        "createdDate": 1546300800,
    },
    {
        "id": "104",
        "name": "Gone Person",
        "phone": "+14155550123",
        "type": "Contact",
        "isDeleted": True,
    },
    {"id": "105", "name": "Four Phones", "phones": ["1", "2", "3", "+14155550144"]},
    # Same id as the Candidate above: Bullhorn numbers each entity separately.
    {"id": "102", "name": "Other Grace", "phone": "+14155550123", "type": "Contact"},
]
SHARED_NUMBER = "+14155550177"


@pytest.fixture(scope="module")
def server() -> Iterator[BullhornSimulator]:
    # One server per module: stopping one costs its 0.5 s poll interval.
    many = [
        {"id": str(900 + i), "name": f"Switchboard {i}", "phone": SHARED_NUMBER} for i in range(12)
    ]
    with BullhornSimulator(SEED + many, token="access-token-xyz") as running:
        yield running


@pytest.fixture
def sim(server: BullhornSimulator) -> BullhornSimulator:
    """The module's server, as good as new: no sessions, no limit, counters at zero."""
    server.expire_sessions()
    server.set_rate_limit(None)
    server.reject_sessions = False
    server.faults.clear()
    server.reset_counters()
    server.logins = 0
    return server


def connection(sim: BullhornSimulator, **options: Any) -> Connection:
    return sim_connection(sim, "bh", **options)


def connector(
    sim: BullhornSimulator,
    *,
    shared: dict[str, Any] | None = None,
    trace: DebugTrace | None = None,
    secret: str | None = None,
    **options: Any,
) -> BullhornConnector:
    conn = connection(sim, **options)
    return BullhornConnector(
        conn, secret=secret or conn.secret(sim.env()), timeout_s=5, trace=trace, shared=shared
    )


def found(outcome: FindOutcome) -> list[tuple[str, str, str]]:
    return sorted((c["type"], c["id"], c["name"]) for c in outcome.contacts)


def search_requests(sim: BullhornSimulator, entity: str) -> int:
    return sim.by_path[f"{sim.rest_path}search/{entity}"]


def test_registry_and_simulator_connection_build_this_connector(sim: BullhornSimulator) -> None:
    assert connector_class("bullhorn") is BullhornConnector
    conn = connection(sim)
    assert conn.crm == "bullhorn" and conn.secret(sim.env()) == "access-token-xyz"


def test_term_match_needs_the_stored_string_and_skips_deleted(sim: BullhornSimulator) -> None:
    c = connector(sim)
    assert found(c.find(["+14155550123"])) == [
        ("Candidate", "102", "Grace Hopper"),
        ("Contact", "102", "Other Grace"),
        ("Lead", "103", "Alan Turing"),
    ]
    assert found(c.find(["(415) 555-0100"])) == [("Contact", "101", "Ada Lovelace")]
    # The E.164 form of Ada's number is a different term: no match, and no error.
    assert c.find(["+14155550100"]).contacts == []
    # A second phone lands in `mobile`, a fourth in `phone3`: both are searched.
    assert found(c.find(["415-555-0123"])) == [("Candidate", "102", "Grace Hopper")]
    assert found(c.find(["+14155550144"])) == [("Contact", "105", "Four Phones")]


def test_plan_keeps_every_formatted_variant(sim: BullhornSimulator) -> None:
    queries = ["+14155550100", "(415) 555-0100", "415-555-0100"]
    assert connector(sim).plan(queries) == queries


def test_unquoted_values_parse_as_lucene_does(sim: BullhornSimulator) -> None:
    """Unquoted, ``+`` is Lucene syntax (400), and ``415-555-0100`` is three tokens ORed; the
    connector quotes every value, a phrase: its tokens in order."""
    login = requests.get(
        f"{sim.url}/rest-services/login",
        params={"version": "*", "access_token": sim.token},
        timeout=5,
    ).json()
    url = login["restUrl"] + "search/ClientContact"
    headers = {"BhRestToken": login["BhRestToken"]}

    def ids(query: str) -> tuple[int, list[Any]]:
        resp = requests.post(
            url, params={"fields": "id"}, headers=headers, timeout=5, json={"query": query}
        )
        return resp.status_code, [r["id"] for r in resp.json().get("data", [])]

    assert ids("phone:+14155550100 AND isDeleted:false")[0] == 400
    assert ids('phone:"(415) 555-0100" AND isDeleted:false') == (200, [101])
    assert ids('phone:"555-0100 415" AND isDeleted:false') == (200, [])  # order matters
    assert ids("phone:0100 AND isDeleted:false") == (200, [101])  # one token of the value


def test_contact_fields_and_dates_normalised(sim: BullhornSimulator) -> None:
    ada = connector(sim).find(["(415) 555-0100"]).contacts[0]
    assert ada == {
        "id": "101",
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
    grace = connector(sim).find(["415-555-0123"]).contacts[0]
    assert grace["createdDate"] == "2021-03-04T10:00:00.123Z"
    assert grace["company"] == "Navy Labs"


def test_simulator_sends_dateadded_in_epoch_milliseconds(sim: BullhornSimulator) -> None:
    login = requests.get(
        f"{sim.url}/rest-services/login",
        params={"version": "*", "access_token": sim.token},
        timeout=5,
    ).json()
    resp = requests.post(
        login["restUrl"] + "search/ClientContact",
        params={"fields": "id,dateAdded"},
        headers={"BhRestToken": login["BhRestToken"]},
        timeout=5,
        json={"query": 'phone:"(415) 555-0100"'},
    )
    assert resp.json()["data"][0]["dateAdded"] == 1561960800 * 1000


def test_pagination_follows_start_and_total(sim: BullhornSimulator) -> None:
    outcome = connector(sim, page_size=5).find([SHARED_NUMBER])
    assert len(outcome.contacts) == 12
    assert search_requests(sim, "ClientContact") == 3  # 5 + 5 + 2
    assert search_requests(sim, "Candidate") == 1 and search_requests(sim, "Lead") == 1


def test_pagination_stops_at_the_page_cap(sim: BullhornSimulator) -> None:
    outcome = connector(sim, page_size=2).find([SHARED_NUMBER])
    assert len(outcome.contacts) == 10  # 5 pages of 2, of 12
    assert search_requests(sim, "ClientContact") == 5


def test_429_waits_for_ratelimit_reset_else_one_second(sim: BullhornSimulator) -> None:
    shared: dict[str, Any] = {}
    connector(sim, shared=shared).find(["+14155550100"])  # logs in
    sim.set_rate_limit((1, 60.0))
    with pytest.raises(RateLimited) as info:
        connector(sim, shared=shared).find(["+14155550100"])
    # ratelimit-reset says the window has ~60 s left: that, not the generic second.
    assert info.value.retry_after_s is not None and 58 <= info.value.retry_after_s <= 60
    assert info.value.rate_limit is not None and info.value.rate_limit.remaining == 0
    assert info.value.status_code == 429
    # The three entity searches are in flight together (fan-out): the CRM's 429 reaches
    # the connector once one of them is answered, so one or both of the others are refused.
    assert sim.rate_limited == 2 and sim.by_path.total() == 1 + 3 + 3


class NoHeaders(BullhornSimulator):
    def rate_limit_headers(self, state: WindowState) -> dict[str, str]:
        return {}


def test_429_without_headers_waits_one_second(make_harness: Any) -> None:
    h = make_harness("bullhorn", sim_class=NoHeaders)
    h.vendor.set_rate_limit((1, 60.0))
    with pytest.raises(RateLimited) as info:
        h.find("+14155550100")  # the login passes, the first search is refused
    assert info.value.retry_after_s == 1.0


def test_expired_session_logs_in_again_once_then_succeeds(sim: BullhornSimulator) -> None:
    shared: dict[str, Any] = {}
    assert found(connector(sim, shared=shared).find(["(415) 555-0100"]))
    assert sim.logins == 1
    sim.expire_sessions()
    outcome = connector(sim, shared=shared).find(["(415) 555-0100"])
    assert found(outcome) == [("Contact", "101", "Ada Lovelace")]
    assert sim.logins == 2
    # The new session is kept: a further lookup needs no login.
    connector(sim, shared=shared).find(["(415) 555-0100"])
    assert sim.logins == 2


def test_concurrent_threads_share_one_relogin(sim: BullhornSimulator) -> None:
    shared: dict[str, Any] = {}
    connector(sim, shared=shared).find(["(415) 555-0100"])
    sim.expire_sessions()
    errors: list[Exception] = []  # a thread's failure must fail the test, not vanish
    start = threading.Barrier(8)

    def lookup() -> None:
        try:
            c = connector(sim, shared=shared)
            start.wait()
            assert found(c.find(["(415) 555-0100"])) == [("Contact", "101", "Ada Lovelace")]
        except Exception as exc:
            errors.append(exc)

    threads = [threading.Thread(target=lookup) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert errors == []
    assert sim.logins == 2


def test_a_second_401_is_auth_rejected(sim: BullhornSimulator) -> None:
    sim.reject_sessions = True
    with pytest.raises(AuthRejected) as info:
        connector(sim).find(["(415) 555-0100"])
    assert info.value.status_code == 401
    # The first login and one retry, no loop: the 3 entity searches run together, and one
    # that meets the 401 after another's fresh login may renew once more itself.
    assert 2 <= sim.logins <= 1 + 3


def test_wrong_access_token_is_auth_rejected(sim: BullhornSimulator) -> None:
    with pytest.raises(AuthRejected):
        connector(sim, secret="not-the-token").find(["(415) 555-0100"])
    assert sim.logins == 0


def test_tokens_never_reach_the_debug_trace(sim: BullhornSimulator) -> None:
    trace = DebugTrace()
    shared: dict[str, Any] = {}
    connector(sim, shared=shared, trace=trace).find(["(415) 555-0100"])
    sim.expire_sessions()
    connector(sim, shared=shared, trace=trace).find(["(415) 555-0100"])
    text = repr(trace.entries)
    assert "/rest-services/login" in text and "access_token=***" in text
    assert sim.token not in text
    session = shared["bullhorn.session"].token
    assert session not in text
    # login, 3 searches; then the 3 concurrent searches each get 401, one login between them
    # (under the lock), and the 3 searches again
    assert len(trace.entries) == 1 + 3 + 3 + 1 + 3


def test_archived_and_converted_records_are_left_out_and_candidate_work_phone_is_searched(
    make_harness: Any,
) -> None:
    """App Connect's Bullhorn connector excludes ClientContact status Archive, Candidate
    Archived and Lead Converted, and searches Candidate workPhone."""
    number = "+14155550166"
    h = make_harness(
        "bullhorn",
        [
            {"id": 1, "name": "Live Contact", "phone": number, "type": "Contact"},
            {"id": 2, "name": "Old Contact", "phone": number, "status": "Archive"},
            {
                "id": 3,
                "name": "Old Candidate",
                "phone": number,
                "type": "Candidate",
                "status": "Archived",
            },
            {"id": 4, "name": "Done Lead", "phone": number, "type": "Lead", "status": "Converted"},
            {"id": 5, "name": "Desk Candidate", "type": "Candidate", "workPhone": number},
        ],
    )
    assert sorted(c["name"] for c in h.find(number).contacts) == [
        "Desk Candidate",
        "Live Contact",
    ]
