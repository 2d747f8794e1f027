"""Issue 11, item 6: ``additional_fields`` fetches the spec's additionalInfo for each real
match ("object keyed by manifest additionalFields[].const values ... contact-dependent options
such as matters, deals, or opportunities"): Clio matters, Pipedrive deals and leads. The extra
requests are paid through the shared budget and appear in the debug trace."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
import redis

from contact_lookup.connectors.registry import ConnectorFactory, validate_connection
from contact_lookup.core.cache import ContactCache
from contact_lookup.core.ratelimit import RateLimiter
from contact_lookup.core.request import LookupRequest
from contact_lookup.core.service import LookupService
from contact_lookup.model.config import parse_config
from contact_lookup.model.errors import ConfigError
from contact_lookup.model.trace import DebugTrace
from tests.contract.harness import CONNECTION, Harness

Make = Callable[..., Harness]
NUMBER = "+14155550161"
PEOPLE = [
    {
        "id": "c-1",
        "name": "Mara Client",
        "phone": NUMBER,
        "createdDate": "2020-01-01T00:00:00Z",
        "matters": [
            {"id": 11, "display_number": "00011-Client", "description": "Lease", "status": "open"},
            {"id": 12, "display_number": "00012-Client", "description": "Old", "status": "closed"},
        ],
        "deals": [
            {"id": 21, "title": "Renewal", "status": "open"},
            {"id": 22, "title": "Lost one", "status": "lost"},
        ],
        "leads": [
            {"id": "5a1e-lead", "title": "Upsell", "is_archived": False},
            {"id": "5a1e-old", "title": "Stale", "is_archived": True},
        ],
    },
    # Holds the number only in a custom field: Clio's wildcard returns it, verification drops
    # it, and its matters must not be fetched.
    {
        "id": "c-2",
        "name": "Not Her",
        "phone": "+16505550199",
        "custom_fields": {"Emergency contact": NUMBER},
        "matters": [{"id": 13, "display_number": "00013", "description": "X", "status": "open"}],
    },
]


def test_clio_matters_for_each_real_match(make_harness: Make) -> None:
    h = make_harness("clio", PEOPLE)
    trace = DebugTrace()
    outcome = h.connector(trace=trace, additional_fields=["matters"]).find([NUMBER])
    (mara,) = outcome.contacts
    assert mara["additionalInfo"] == {
        "matters": [{"const": "11", "title": "00011-Client Lease", "id": 11}]
    }
    matter_reads = [e for e in trace.entries if "/matters.json" in e.get("url", "")]
    assert len(matter_reads) == 1 and "client_id=" in matter_reads[0]["url"]  # not for c-2


def test_pipedrive_open_deals_and_live_leads(make_harness: Make) -> None:
    h = make_harness("pipedrive", PEOPLE)
    trace = DebugTrace()
    c = h.connector(trace=trace, additional_fields=["deals", "leads"])
    (mara,) = c.find([NUMBER]).contacts
    assert mara["additionalInfo"] == {
        "deals": [{"const": "21", "title": "Renewal", "id": 21}],
        "leads": [{"const": "5a1e-lead", "title": "Upsell", "id": "5a1e-lead"}],
    }
    # GET /v1/leads answers unarchived leads; Pipedrive removed archived_status from it
    # (pipedrive/client-nodejs CHANGELOG), so the read must not depend on it.
    (leads,) = [e["url"] for e in trace.entries if "/api/v1/leads" in e.get("url", "")]
    assert "person_id=" in leads and "archived_status" not in leads


def test_without_additional_fields_nothing_is_fetched(make_harness: Make) -> None:
    h = make_harness("clio", PEOPLE)
    (mara,) = h.find(NUMBER).contacts
    assert mara["additionalInfo"] is None
    assert h.vendor.by_path["/api/v4/matters.json"] == 0


@pytest.mark.parametrize(("crm", "bad"), [("clio", ["deals"]), ("pipedrive", "deals")])
def test_unknown_or_malformed_additional_fields_are_refused_at_load(
    make_harness: Make, crm: str, bad: object
) -> None:
    h = make_harness(crm, PEOPLE)
    with pytest.raises(ConfigError, match="additional_fields"):
        validate_connection(h.connection(additional_fields=bad))


def test_additional_requests_are_paid_through_the_shared_budget(
    make_harness: Make, redis_db: redis.Redis
) -> None:
    h = make_harness("clio", PEOPLE)
    table = {"rc_account": "a", **h.table, "additional_fields": ["matters"], "rate_limit": "2/30"}
    config = parse_config({"connections": {CONNECTION: table}}, Path("."))
    svc = LookupService(
        config,
        ContactCache(redis_db, ttl_s=60),
        ConnectorFactory(env=dict(h.env)),
        limiter=RateLimiter(redis_db),
    )
    result = svc.lookup(CONNECTION, LookupRequest(NUMBER, debug=True))
    assert result["matchedContactInfo"][0]["additionalInfo"]["matters"][0]["const"] == "11"
    requests = [e for e in result["debugTrace"] if "url" in e]
    assert len(requests) == 2  # the search and the matters read
    bucket = [k for k in redis_db.keys("*rate*") if b"vendor" not in k and b"block" not in k]
    assert sum(redis_db.zcard(k) for k in bucket) == 2  # 1 planned + 1 paid when sent


def test_hubspot_open_deals(make_harness: Make) -> None:
    people = [
        {**PEOPLE[0], "deals": [{"id": 31, "title": "Q3 renewal"}, {"id": 32, "status": "lost"}]}
    ]
    h = make_harness("hubspot", people)
    (mara,) = h.connector(additional_fields=["deals"]).find([NUMBER]).contacts
    assert mara["additionalInfo"] == {"deals": [{"const": "31", "title": "Q3 renewal", "id": "31"}]}


def test_salesforce_open_opportunities_of_a_contact_none_for_a_lead(make_harness: Make) -> None:
    people = [
        {
            **PEOPLE[0],
            "id": "003A00000000042",
            "type": "Contact",
            "opportunities": [
                {"id": "006A01", "title": "Fleet deal"},
                {"id": "006A02", "title": "Closed one", "status": "closed"},
            ],
        },
        {"id": "00QA00000000042", "name": "Lena Lead", "phone": NUMBER, "type": "Lead"},
    ]
    h = make_harness("salesforce", people)
    trace = DebugTrace()
    found = h.connector(trace=trace, additional_fields=["opportunities"]).find([NUMBER])
    info = {c["name"]: c["additionalInfo"] for c in found.contacts}
    assert info == {
        "Mara Client": {
            "opportunities": [{"const": "006A01", "title": "Fleet deal", "id": "006A01"}]
        },
        "Lena Lead": {"opportunities": []},
    }
    assert len(trace.entries) == 2  # the SOSL search and one query, none for the Lead


def test_bullhorn_open_job_orders_of_a_client_contact(make_harness: Make) -> None:
    people = [
        {
            **PEOPLE[0],
            "id": 4201,
            "job_orders": [
                {"id": 901, "title": "Welder, night shift"},
                {"id": 902, "title": "Filled", "isOpen": False},
            ],
        },
        {"id": 4202, "name": "Cand Idate", "phone": NUMBER, "type": "Candidate"},
    ]
    h = make_harness("bullhorn", people)
    found = h.connector(additional_fields=["job_orders"]).find([NUMBER]).contacts
    info = {c["name"]: c["additionalInfo"] for c in found}
    assert info == {
        "Mara Client": {
            "job_orders": [{"const": "901", "title": "Welder, night shift", "id": 901}]
        },
        "Cand Idate": {"job_orders": []},
    }
    assert h.vendor.by_path["/rest-services/sim001/search/JobOrder"] == 1


def test_insightly_open_opportunities_and_projects_of_a_contact(make_harness: Make) -> None:
    people = [
        {
            **PEOPLE[0],
            "opportunities": [{"id": 71, "title": "Big sale"}, {"id": 72, "state": "LOST"}],
            "projects": [{"id": 81, "title": "Rollout"}, {"id": 82, "status": "COMPLETED"}],
        }
    ]
    h = make_harness("insightly", people)
    c = h.connector(additional_fields=["opportunities", "projects"])
    (mara,) = c.find([NUMBER]).contacts
    assert mara["additionalInfo"] == {
        "opportunities": [{"const": "71", "title": "Big sale", "id": 71}],
        "projects": [{"const": "81", "title": "Rollout", "id": 81}],
    }
    assert sum(n for p, n in h.vendor.by_path.items() if p.endswith("/Links")) == 1


class CountingBudget:
    """A budget that records what it was asked to pay for (``RequestBudget``)."""

    def __init__(self) -> None:
        self.taken = 0

    def take(self, requests: int = 1) -> None:
        self.taken += requests

    def observe(self, state: object) -> None:
        return None


def test_bullhorn_placements_of_a_candidate_and_of_a_client_contacts_jobs(
    make_harness: Make,
) -> None:
    """A Candidate's placements (``candidate.id``), a ClientContact's through its job orders
    (``jobOrder.clientContact.id``), ended ones left out, a Lead none; one ``search/Placement``
    per Candidate or ClientContact, each paid for and in the debug trace."""
    people = [
        {
            **PEOPLE[0],
            "id": 4201,
            "job_orders": [{"id": 901, "title": "Welder, night shift"}],
        },
        {
            "id": 4202,
            "name": "Cand Idate",
            "phone": NUMBER,
            "type": "Candidate",
            "placements": [
                {"id": 701, "job_order": 901, "status": "Approved"},
                {"id": 702, "job_order": 901, "status": "Completed"},
                {"id": 703, "job_order": {"id": 950, "title": "Forklift driver"}},
            ],
        },
        # Not the caller, but placed in Mara's job order: one of Mara's placements.
        {
            "id": 4203,
            "name": "Other Placed",
            "phone": "+16505550199",
            "type": "Candidate",
            "placements": [{"id": 704, "job_order": 901, "status": "Terminated"}],
        },
        {
            "id": 4204,
            "name": "Pat Placed",
            "phone": "+16505550198",
            "type": "Candidate",
            "placements": [{"id": 705, "job_order": 901}],
        },
        {"id": 4205, "name": "Lee Lead", "phone": NUMBER, "type": "Lead"},
    ]
    h = make_harness("bullhorn", people)
    trace, budget = DebugTrace(), CountingBudget()
    c = h.connector(trace=trace, additional_fields=["placements"])
    c.budget = budget
    info = {x["name"]: x["additionalInfo"] for x in c.find([NUMBER]).contacts}
    assert info == {
        "Mara Client": {
            "placements": [
                {"const": "701", "title": "Welder, night shift: Cand Idate", "id": 701},
                {"const": "705", "title": "Welder, night shift: Pat Placed", "id": 705},
            ]
        },
        "Cand Idate": {
            "placements": [
                {"const": "701", "title": "Welder, night shift", "id": 701},
                {"const": "703", "title": "Forklift driver", "id": 703},
            ]
        },
        "Lee Lead": {"placements": []},
    }
    assert h.vendor.by_path["/rest-services/sim001/search/Placement"] == 2
    assert sum("search/Placement" in e.get("url", "") for e in trace.entries) == 2
    assert budget.taken == h.vendor.requests  # login, 3 searches, 2 placement searches


def test_bullhorn_additional_fields_are_job_orders_and_placements(make_harness: Make) -> None:
    h = make_harness("bullhorn", PEOPLE)
    validate_connection(h.connection(additional_fields=["job_orders", "placements"]))
    with pytest.raises(ConfigError, match="additional_fields"):
        validate_connection(h.connection(additional_fields=["deals"]))
