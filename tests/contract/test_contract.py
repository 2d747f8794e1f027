"""The promises every connector keeps, run once per connector (see conftest.ALL_CRMS).

Expected answers come from contacts.json by hand, not from the code: the createdDate values
below were worked out independently (``date -u -d @1546300800`` is 2019-01-01T00:00:00Z,
@1420070400 is 2015-01-01T00:00:00Z, @1600000000 is 2020-09-13T12:26:40Z; 08:00 at +02:00 is
06:00Z). Contacts are compared by name because each vendor numbers its records its own way.
"""

from __future__ import annotations

import json
import time

import pytest
import redis

from contact_lookup.connectors.base import FindOutcome
from contact_lookup.core.request import LookupRequest
from contact_lookup.model.errors import AuthRejected, CRMUnavailable, RateLimited
from contact_lookup.model.trace import DebugTrace
from tests.contract.harness import CONNECTION, HANG_S, SECRET, Harness

FORMATTED_ONLY = "+14155550100"  # Ada Lovelace, stored only as "(415) 555-0100"
TWO_FORMATS = "+14155550123"  # Grace Hopper, stored as "+14155550123" and "415-555-0123"
SHARED = "+14155550177"  # Alan Turing and Barbara Liskov
TWO_NUMBERS = ("+14155550188", "+14155550199")  # Edsger Dijkstra's two numbers
LEAD_SECOND = "+14155550144"  # Katherine Johnson (a Lead), her second number
ABROAD = "+442079460958"  # Margaret Hamilton
NOBODY = "+14155550111"
US_FORMATS = "(***) ***-****, ***-***-****"

EXPECTED_CREATED = {
    "Ada Lovelace": "2021-03-04T10:00:00Z",
    "Grace Hopper": "2019-07-01T06:00:00Z",
    "Alan Turing": "2019-01-01T00:00:00Z",
    "Barbara Liskov": "2015-01-01T00:00:00Z",
    "Edsger Dijkstra": "2018-01-05T00:00:00Z",
    "Katherine Johnson": "2020-09-13T12:26:40Z",
    "Margaret Hamilton": "2017-03-15T09:30:00Z",
}


def names(outcome: FindOutcome) -> list[str]:
    return [c["name"] for c in outcome.contacts]


# ----- matching --------------------------------------------------------------------------------
def test_number_stored_only_formatted_is_found_through_its_format(harness: Harness) -> None:
    assert names(harness.find(FORMATTED_ONLY, "(***) ***-****")) == ["Ada Lovelace"]


def test_shared_number_returns_every_contact(harness: Harness) -> None:
    assert sorted(names(harness.find(SHARED))) == ["Alan Turing", "Barbara Liskov"]


@pytest.mark.parametrize("number", TWO_NUMBERS)
def test_contact_with_two_numbers_is_found_by_either(harness: Harness, number: str) -> None:
    assert names(harness.find(number)) == ["Edsger Dijkstra"]


def test_lead_is_found_by_its_second_number(harness: Harness) -> None:
    assert names(harness.find(LEAD_SECOND)) == ["Katherine Johnson"]


def test_contact_found_by_two_formats_appears_once(harness: Harness) -> None:
    outcome = harness.find(TWO_FORMATS, "***-***-****")
    assert names(outcome) == ["Grace Hopper"]
    ids = [c["id"] for c in outcome.contacts]
    assert len(ids) == len(set(ids))


def test_no_match_is_an_empty_list_not_an_error(harness: Harness) -> None:
    assert harness.find(NOBODY, US_FORMATS).contacts == []


def test_every_contact_comes_back_in_the_spec_shape(harness: Harness) -> None:
    outcome = harness.find(FORMATTED_ONLY, "(***) ***-****")
    (ada,) = outcome.contacts
    assert isinstance(ada["id"], str) and ada["id"]
    # The matched number: as stored, or the query that found it (token-matching CRMs).
    assert ada["phone"] in {"(415) 555-0100", *outcome.queries, FORMATTED_ONLY}
    assert {
        "id",
        "name",
        "phone",
        "type",
        "title",
        "company",
        "email",
        "createdDate",
        "mostRecentActivityDate",
        "additionalInfo",
    } <= set(ada)


# ----- dates -----------------------------------------------------------------------------------
def test_created_date_is_normalised_to_iso_utc(harness: Harness) -> None:
    found: dict[str, str] = {}
    for number in (FORMATTED_ONLY, TWO_FORMATS, SHARED, *TWO_NUMBERS, LEAD_SECOND, ABROAD):
        for contact in harness.find(number, US_FORMATS).contacts:
            found[contact["name"]] = contact["createdDate"]
    assert found == EXPECTED_CREATED


# ----- failures --------------------------------------------------------------------------------
def test_wrong_token_is_auth_rejected(harness: Harness) -> None:
    with pytest.raises(AuthRejected):
        harness.find(SHARED, factory=harness.factory(env=harness.wrong_env()))


@pytest.mark.parametrize("fault", ["500", "503"])
def test_server_error_is_crm_unavailable(harness: Harness, fault: str) -> None:
    harness.vendor.inject(fault)
    with pytest.raises(CRMUnavailable) as info:
        harness.find(SHARED)
    assert info.value.status_code == int(fault)


def test_hung_server_is_crm_unavailable_within_the_client_timeout(harness: Harness) -> None:
    harness.vendor.inject("timeout")
    started = time.monotonic()
    with pytest.raises(CRMUnavailable):
        harness.find(SHARED, factory=harness.factory(timeout_s=0.5))
    # Gave up on its own timeout, not because the simulator let go.
    assert time.monotonic() - started < HANG_S


@pytest.mark.parametrize("fault", ["malformed", "truncated"])
def test_broken_body_is_crm_unavailable(harness: Harness, fault: str) -> None:
    harness.vendor.inject(fault)
    with pytest.raises(CRMUnavailable):
        harness.find(SHARED)


# ----- rate limits -----------------------------------------------------------------------------
def test_rate_limit_state_is_the_newest_the_crm_reported(harness: Harness) -> None:
    harness.require_rate_limit_headers()
    harness.vendor.set_rate_limit((100, 60))
    harness.vendor.reset_counters()
    state = harness.find(SHARED).rate_limit
    assert state is not None
    assert state.amount == 100
    assert state.remaining == 100 - harness.vendor.requests


def test_over_the_limit_is_rate_limited(harness: Harness) -> None:
    harness.vendor.set_rate_limit((1, 30))
    with pytest.raises(RateLimited) as info:
        for _ in range(3):
            harness.find(SHARED)
    assert harness.vendor.rate_limited >= 1
    wait = info.value.retry_after_s
    # The vendor's own wait where it gives one (never past the 30 s window), else None.
    assert wait is None or 1 <= wait <= 31


# ----- debug trace -----------------------------------------------------------------------------
def test_debug_trace_has_one_entry_per_request_and_no_secret(harness: Harness) -> None:
    if harness.sim is not None:
        harness.sim.reset_counters()
    trace = DebugTrace()
    outcome = harness.find(TWO_FORMATS, "***-***-****", trace=trace)
    requests_made = harness.sim.requests if harness.sim is not None else len(outcome.queries)
    assert len(trace.entries) == requests_made > 0
    assert all(set(e) == {"method", "url", "status", "durationMs"} for e in trace.entries)
    assert SECRET not in json.dumps(trace.entries)


# ----- through the lookup service, with a real Redis ------------------------------------------
@pytest.mark.redis
def test_service_finds_caches_and_keeps_secrets_out(
    harness: Harness, redis_db: redis.Redis
) -> None:
    service = harness.service(redis_db, formats="(***) ***-****")
    first = service.find_contact(CONNECTION, LookupRequest(FORMATTED_ONLY, debug=True))
    assert first["successful"] is True
    assert [c["name"] for c in first["matchedContactInfo"]] == ["Ada Lovelace"]
    assert first["matchedContactInfo"][0]["createdDate"] == EXPECTED_CREATED["Ada Lovelace"]
    assert first["debugTrace"]
    assert SECRET not in json.dumps(first)
    again = service.find_contact(CONNECTION, LookupRequest(FORMATTED_ONLY, debug=True))
    assert again["extraDataTracking"] == {"isCached": True}
    assert again["debugTrace"] == []  # answered from Redis: no CRM request at all
    assert again["matchedContactInfo"] == first["matchedContactInfo"]


@pytest.mark.redis
def test_service_reports_rate_limit_state(harness: Harness, redis_db: redis.Redis) -> None:
    harness.require_rate_limit_headers()
    harness.vendor.set_rate_limit((100, 60))
    result = harness.service(redis_db).find_contact(CONNECTION, LookupRequest(SHARED))
    assert result["successful"] is True
    assert result["extraDataTracking"]["ratelimitAmount"] == 100
    assert 0 <= result["extraDataTracking"]["ratelimitRemaining"] < 100


@pytest.mark.redis
def test_service_failure_is_never_an_empty_success(harness: Harness, redis_db: redis.Redis) -> None:
    harness.vendor.inject("503")
    result = harness.service(redis_db).find_contact(CONNECTION, LookupRequest(SHARED))
    assert result["successful"] is False
    assert result["matchedContactInfo"] == []
    assert result["extraDataTracking"]["statusCode"] == 503
    assert result["returnMessage"]["messageType"] == "danger"
    assert redis_db.dbsize() == 0  # a failure caches nothing


@pytest.mark.redis
def test_service_no_match_is_a_successful_warning(harness: Harness, redis_db: redis.Redis) -> None:
    result = harness.service(redis_db, formats=US_FORMATS).find_contact(
        CONNECTION, LookupRequest(NOBODY)
    )
    assert result["successful"] is True
    assert result["matchedContactInfo"] == []
    assert result["returnMessage"]["messageType"] == "warning"
