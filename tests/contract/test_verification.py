"""Issue 11: a CRM hit is a match only when the record holds the caller's number.

Run once per connector (``harness`` fixture). The simulators search the way their vendors do
(Pipedrive contains, Clio wildcard over many fields, Salesforce's phone index that ignores a
country code), so a connector that trusted the search would return the wrong people here.
"""

from __future__ import annotations

from collections.abc import Callable

import redis

from contact_lookup.core.request import LookupRequest
from contact_lookup.model.trace import DebugTrace
from tests.contract.harness import Harness

Make = Callable[..., Harness]

# Margaret Hamilton is stored as +442079460958: same national digits, another subscriber.
SAME_DIGITS_OTHER_COUNTRY = "+12079460958"
# Diego Rivera, stored exactly as Mexico's carriers still send mobiles: "+521..." (pre-2019).
MEXICO_LEGACY = "+5215555550142"
SHARED = "+14155550177"  # Alan Turing and Barbara Liskov; Ruth's custom field holds it too


def unverified(trace: DebugTrace) -> int:
    return sum(e.get("count", 0) for e in trace.entries if e.get("event") == "unverified")


def test_same_national_digits_in_another_country_is_not_a_match(harness: Harness) -> None:
    trace = DebugTrace()
    outcome = harness.find(SAME_DIGITS_OTHER_COUNTRY, trace=trace)
    assert outcome.contacts == []
    # Contains- and index-searching CRMs did return Margaret: dropped, and counted.
    assert unverified(trace) == outcome.dropped
    if harness.crm in ("pipedrive", "salesforce"):
        assert outcome.dropped == 1


def test_hit_on_another_field_is_dropped_and_counted(harness: Harness) -> None:
    trace = DebugTrace()
    outcome = harness.find(SHARED, trace=trace)
    assert sorted(c["name"] for c in outcome.contacts) == ["Alan Turing", "Barbara Liskov"]
    assert all(c["phone"] == SHARED for c in outcome.contacts)
    if harness.crm == "clio":  # Clio's query also matched Ruth's "Emergency contact" field
        assert outcome.dropped == 1 and unverified(trace) == 1


def test_a_number_the_library_calls_invalid_is_still_searched(harness: Harness) -> None:
    outcome = harness.find(MEXICO_LEGACY)
    assert [c["name"] for c in outcome.contacts] == ["Diego Rivera"]
    assert outcome.contacts[0]["phone"] == MEXICO_LEGACY


def test_extension_lookup_is_verified_or_refused(harness: Harness, redis_db: redis.Redis) -> None:
    service = harness.service(redis_db, extension_lookup=True)
    result = service.lookup("contract", LookupRequest("102", is_extension=True, debug=True))
    if harness.crm == "json":  # the file stores extensions like numbers; none is 102 here
        assert result["successful"] and result["matchedContactInfo"] == []
        return
    # Clio's wildcard would return Ruth ("102 Harbour St") reported as phone "102"; no vendor
    # here has an extension field to verify against, so the lookup is refused, unsent.
    assert not result["successful"]
    assert "has no extension field" in result["returnMessage"]["message"]
    assert result["debugTrace"] == []
    assert harness.vendor.requests == 0


def test_pipedrive_contains_search_never_returns_another_country(make_harness: Make) -> None:
    """The reported case: +442079460958 was returned and cached for a +12079460958 caller."""
    h = make_harness("pipedrive")
    outcome = h.find(SAME_DIGITS_OTHER_COUNTRY)
    assert h.vendor.queries == ["2079460958"]  # the contains search did find Margaret
    assert outcome.contacts == [] and outcome.dropped == 1
