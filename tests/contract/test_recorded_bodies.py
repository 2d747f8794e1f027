"""Each vendor's recorded response bodies (tests/contract/fixtures, see SOURCES.md) replayed
through its connector over real HTTP.

The recorded bodies were captured without phone fields (the vendors' documentation examples
ask for names, e-mails and dates only). Replayed as recorded, every record must be dropped
and counted: nothing in them proves the record holds the caller's number. Replayed with the
phone field the vendor documents added (``with_phones``), the same bodies must map to the
spec's contact shape; the expected values are read off the bodies by hand (dates worked out
independently: ``date -u -d @1530815115`` is 2018-07-05 18:25:15 UTC).
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from contact_lookup.connectors.base import FindOutcome
from contact_lookup.model.trace import DebugTrace
from crmsim.base import SimRequest, SimResponse, Simulator
from tests.contract.harness import SECRET, sim_connection

FIXTURES = Path(__file__).with_name("fixtures")
NUMBER = "+14155550132"  # the number the recorded bodies' people were given
Route = Callable[[SimRequest], Any]


def body(name: str) -> Any:
    return json.loads((FIXTURES / name).read_text(encoding="utf-8"))


class Replay(Simulator):
    """Answers each path with a recorded body (``{BASE}`` becomes this server's URL)."""

    name = "replay"

    def __init__(self, crm: str, routes: dict[str, Route]) -> None:
        super().__init__([], token=SECRET)
        self.crm_name, self.routes = crm, routes

    def connection(self) -> dict[str, Any]:
        return {"crm": self.crm_name, "base_url": self.url, "token_env": self.token_env}

    def route(self, req: SimRequest) -> SimResponse:
        answer = self.routes.get(req.path)
        if answer is None:
            return SimResponse(404, {"error": "not recorded"})
        text = json.dumps(answer(req)).replace("{BASE}", self.url)
        return SimResponse(200, text.encode())


@pytest.fixture
def replay() -> Iterator[Callable[[str, dict[str, Route]], Replay]]:
    started: list[Replay] = []

    def make(crm: str, routes: dict[str, Route]) -> Replay:
        sim = Replay(crm, routes).start()
        started.append(sim)
        return sim

    yield make
    for sim in started:
        sim.stop()


def run(sim: Replay, queries: list[str] | None = None) -> tuple[FindOutcome, DebugTrace]:
    from contact_lookup.connectors.registry import ConnectorFactory

    trace = DebugTrace()
    factory = ConnectorFactory(env=dict(sim.env()), timeout_s=2.0)
    connector = factory.build(sim_connection(sim, "replay"), trace)
    return connector.find(queries or [NUMBER]), trace


def dropped_in(trace: DebugTrace) -> int:
    return sum(e.get("count", 0) for e in trace.entries if e.get("event") == "unverified")


def brief(outcome: FindOutcome) -> list[tuple[Any, ...]]:
    return [
        (c["name"], c["phone"], c["company"], c["email"], c["createdDate"])
        for c in outcome.contacts
    ]


# ----- Clio ------------------------------------------------------------------------------------
def clio_routes(phones: bool) -> dict[str, Route]:
    pages = [body("clio_page1.json"), body("clio_page2.json")]
    if phones:  # Clio v4 Contact.phone_numbers: [{id, number, name, default_number}]
        for page in pages:
            for item in page["data"]:
                item["phone_numbers"] = [{"number": "+1 415-555-0132", "name": "Work"}]

    def contacts(req: SimRequest) -> Any:
        return pages[1] if req.arg("page_token") else pages[0]

    return {"/api/v4/contacts.json": contacts}


def test_clio_recorded_pages(replay: Callable[..., Replay]) -> None:
    sim = replay("clio", clio_routes(phones=False))
    outcome, trace = run(sim)
    assert outcome.contacts == [] and outcome.dropped == 2 and dropped_in(trace) == 2
    assert sim.requests == 2  # meta.paging.next followed to the last page
    outcome, _ = run(replay("clio", clio_routes(phones=True)))
    assert brief(outcome) == [
        (
            "Test Person",
            "+1 415-555-0132",
            "Example LLP",
            "test.person@example.com",
            "2019-04-26T03:10:26Z",
        ),
        ("Example Co", "+1 415-555-0132", None, None, "2020-02-29T17:00:00Z"),
    ]


# ----- Pipedrive -------------------------------------------------------------------------------
def pipedrive_routes() -> dict[str, Route]:
    person = body("pd_person1.json")["data"]

    def search(req: SimRequest) -> Any:
        return body("pd_page2.json") if req.arg("cursor") else body("pd_page1.json")

    def persons(req: SimRequest) -> Any:
        # "Get all persons" answers in the detail shape of pd_person1.json; person 2 of the
        # recorded pages has no recorded detail, so it is absent, as a deleted person is.
        ids = {int(i) for i in (req.arg("ids") or "").split(",") if i}
        data = [person] if person["id"] in ids else []
        return {"success": True, "data": data, "additional_data": {"next_cursor": None}}

    return {"/api/v2/persons/search": search, "/api/v2/persons": persons}


def test_pipedrive_recorded_pages_and_person(replay: Callable[..., Replay]) -> None:
    sim = replay("pipedrive", pipedrive_routes())
    outcome, _ = run(sim)
    # Both recorded phones are the number: "+1 415-555-0132" and "4155550132" (US region).
    assert brief(outcome) == [
        (
            "Emery Cole",
            "+1 415-555-0132",
            "Finley Moss",
            "jane@example.com",
            "2017-10-18T13:23:07Z",
        ),
        ("Gray Holt", "4155550132", None, None, None),
    ]
    assert sim.by_path["/api/v2/persons/search"] == 2 and sim.by_path["/api/v2/persons"] == 1


def test_pipedrive_recorded_search_for_another_number_is_no_match(
    replay: Callable[..., Replay],
) -> None:
    routes = {"/api/v2/persons/search": lambda req: body("pd_search.json")}
    outcome, trace = run(replay("pipedrive", routes), ["+442079460958"])
    assert outcome.contacts == [] and dropped_in(trace) == 1


# ----- Insightly -------------------------------------------------------------------------------
def insightly_routes(big: bool = False) -> dict[str, Route]:
    def search(entity: str) -> Route:
        def answer(req: SimRequest) -> Any:
            field, skip = req.arg("field_name"), int(req.arg("skip") or 0)
            if entity == "Contacts" and field == "PHONE":
                records = body("ins_page100.json" if big else "ins_contacts_phone.json")
                return records if skip == 0 else []
            if entity == "Leads" and field == "MOBILE" and not big:
                return body("ins_leads_mobile.json")
            return []

        return answer

    return {"/v3.1/Contacts/Search": search("Contacts"), "/v3.1/Leads/Search": search("Leads")}


def test_insightly_recorded_contact_and_lead(replay: Callable[..., Replay]) -> None:
    outcome, _ = run(replay("insightly", insightly_routes()))
    assert brief(outcome) == [
        (
            "Test Contact",
            "+14155550132",
            None,
            "test.contact@example.com",
            "2019-08-06T18:45:03.590Z",
        ),
        (
            "Lead Person",
            "+14155550132",
            "Example Auto Care",
            "lead.person@example.com",
            "2016-03-28T13:11:50Z",
        ),
    ]


def test_insightly_recorded_full_page_asks_for_the_next(replay: Callable[..., Replay]) -> None:
    sim = replay("insightly", insightly_routes(big=True))
    outcome, _ = run(sim)
    assert len(outcome.contacts) == 100
    assert sim.by_path["/v3.1/Contacts/Search"] == 3  # PHONE pages 1 and 2, PHONE_MOBILE


# ----- Bullhorn --------------------------------------------------------------------------------
def bullhorn_routes(phones: bool) -> dict[str, Route]:
    recorded = {"ClientContact": body("bh_cc.json"), "Candidate": body("bh_cand.json")}
    if phones:  # Bullhorn entity field "phone" (ClientContact), "mobile" (Candidate)
        recorded["ClientContact"]["data"][0]["phone"] = "(415) 555-0132"
        recorded["Candidate"]["data"][0]["mobile"] = "415-555-0132"
    empty = {"total": 0, "start": 0, "count": 0, "data": []}
    routes: dict[str, Route] = {
        "/rest-services/login": lambda req: {
            "BhRestToken": "bh-session-1",
            "restUrl": "{BASE}/rest-services/corp/",
        }
    }
    for entity in ("ClientContact", "Candidate", "Lead"):
        page = recorded.get(entity, empty)
        routes[f"/rest-services/corp/search/{entity}"] = lambda req, page=page: copy.deepcopy(page)
    return routes


def test_bullhorn_recorded_searches(replay: Callable[..., Replay]) -> None:
    outcome, trace = run(replay("bullhorn", bullhorn_routes(phones=False)))
    assert outcome.contacts == [] and dropped_in(trace) == 2
    outcome, _ = run(replay("bullhorn", bullhorn_routes(phones=True)))
    # Same id in two entities: two people (dedupe keys on type and id).
    assert brief(outcome) == [
        (
            "Alanzo Smith",
            "(415) 555-0132",
            "Example Staffing Corp",
            "alanzo.smith@example.com",
            "2018-07-05T18:25:15.887Z",
        ),
        ("Alanzo Smith", "415-555-0132", "Self", "alanzo@example.org", "2015-01-01T00:00:00Z"),
    ]


# ----- HubSpot ---------------------------------------------------------------------------------
def hubspot_routes(phones: bool) -> dict[str, Route]:
    pages = [body("hubspot_page1.json"), body("hubspot_page2.json")]
    if phones:  # HubSpot contact properties "phone" and "mobilephone"
        pages[0]["results"][0]["properties"]["phone"] = "+14155550132"
        pages[1]["results"][0]["properties"]["mobilephone"] = "+1 (415) 555-0132"

    def search(req: SimRequest) -> Any:
        sent = req.json() or {}
        return pages[1] if sent.get("after") else pages[0]

    return {"/crm/v3/objects/contacts/search": search}


def test_hubspot_recorded_pages(replay: Callable[..., Replay]) -> None:
    sim = replay("hubspot", hubspot_routes(phones=False))
    outcome, trace = run(sim)
    assert outcome.contacts == [] and dropped_in(trace) == 2 and sim.requests == 2
    outcome, _ = run(replay("hubspot", hubspot_routes(phones=True)))
    assert [(c["name"], c["phone"], c["createdDate"]) for c in outcome.contacts] == [
        ("Test Person", "+14155550132", "2024-01-17T19:55:04.281Z"),
        (outcome.contacts[1]["name"], "+1 (415) 555-0132", outcome.contacts[1]["createdDate"]),
    ]
    assert outcome.contacts[1]["name"] != "Test Person"


def test_hubspot_documented_search_answer(replay: Callable[..., Replay]) -> None:
    docs = body("hubspot_search_docs.json")
    routes = {"/crm/v3/objects/contacts/search": lambda req: docs}
    outcome, trace = run(replay("hubspot", routes))
    assert outcome.contacts == [] and dropped_in(trace) == 2


# ----- Salesforce ------------------------------------------------------------------------------
def salesforce_routes(phones: bool) -> dict[str, Route]:
    recorded = body("sf_search.json")
    if phones:  # Contact/Lead standard fields Phone and MobilePhone
        recorded["searchRecords"][0]["Phone"] = "(415) 555-0132"
        recorded["searchRecords"][1]["MobilePhone"] = "4155550132"
        recorded["searchRecords"][2]["Phone"] = "(415) 555-0199"  # the index's near miss
    return {"/services/data/v59.0/search/": lambda req: recorded}


def test_salesforce_recorded_search(replay: Callable[..., Replay]) -> None:
    outcome, trace = run(replay("salesforce", salesforce_routes(phones=False)))
    assert outcome.contacts == [] and dropped_in(trace) == 3
    outcome, trace = run(replay("salesforce", salesforce_routes(phones=True)))
    assert brief(outcome) == [
        (
            "Test Contact One",
            "(415) 555-0132",
            "Edge Communications",
            "one@example.com",
            "2019-05-10T17:35:37Z",
        ),
        ("Test Lead Two", "4155550132", "Example Lead Co", None, "2013-01-15T21:52:00Z"),
    ]
    assert dropped_in(trace) == 1
