"""The declarative ``rest`` connector, through the two shipped templates (examples/rest/).

Each template runs the whole connector contract (contact_lookup.testing.contract) against
the simulator of its vendor (crmsim/capsule.py, crmsim/copper.py, answering in the shapes the
vendors document), then the rest connector's own promises: paging (Capsule's ``Link`` header,
Copper's full pages), the vendor's rate-limit headers, verification of what a wide search
returns, and the vendor's date format normalised.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from contact_lookup.connectors.rest import RestConnector
from contact_lookup.model.errors import CRMUnavailable, RateLimited
from contact_lookup.testing.contract import (
    HANG_S,
    SECRET,
    SEED,
    SHARED,
    ConnectorContract,
    Harness,
)
from crmsim.base import SimRequest, SimResponse, Simulator
from crmsim.capsule import SEARCH_PATH as CAPSULE_SEARCH
from crmsim.capsule import CapsuleSimulator
from crmsim.copper import SEARCH_PATH as COPPER_SEARCH
from crmsim.copper import CopperSimulator

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "rest"
CROWD = "+14155550000"


def template(name: str) -> dict[str, Any]:
    """The connection table of a shipped template, as its file has it."""
    data = tomllib.loads((EXAMPLES / f"{name}.toml").read_text(encoding="utf-8"))
    table: dict[str, Any] = data["connections"][name]
    return table


def crowd(count: int) -> list[dict[str, Any]]:
    return [
        {"id": f"p{i}", "name": f"Person {i:02d}", "phone": CROWD, "createdDate": 1600000000}
        for i in range(count)
    ]


MakeRest = Callable[..., Harness]


@pytest.fixture
def make_rest(tmp_path: Path) -> Iterator[MakeRest]:
    """``make_rest(name, contacts=SEED, **sim_kwargs)``: a template against its simulator."""
    started: list[Simulator] = []
    classes: dict[str, type[Simulator]] = {"capsule": CapsuleSimulator, "copper": CopperSimulator}

    def make(
        name: str, contacts: Any = SEED, sim_class: type[Simulator] | None = None, **sim_kwargs: Any
    ) -> Harness:
        cls = sim_class or classes[name]
        sim = cls(contacts, **{"token": SECRET, "hang_s": HANG_S, **sim_kwargs})
        started.append(sim.start())
        table = {**template(name), "base_url": sim.url, "token_env": sim.token_env}
        table.pop("formats", None)  # the contract passes its own formats
        table.pop("rate_limit", None)
        return Harness("rest", table, dict(sim.env()), tmp_path, sim)

    yield make
    for sim in started:
        sim.stop()


class TestCapsuleTemplate(ConnectorContract):
    @pytest.fixture
    def harness(self, make_rest: MakeRest) -> Harness:
        return make_rest("capsule")


class TestCopperTemplate(ConnectorContract):
    @pytest.fixture
    def harness(self, make_rest: MakeRest) -> Harness:
        return make_rest("copper")


def rest(h: Harness, **overrides: Any) -> RestConnector:
    connector = h.connector(**overrides)
    assert isinstance(connector, RestConnector)
    return connector


# ----- placeholders ----------------------------------------------------------------------------
def test_digits_and_national_placeholders_are_what_the_crm_receives(make_rest: MakeRest) -> None:
    h = make_rest("capsule")
    url = "/api/v2/parties/search?q={national}&perPage=100&d={digits}"
    connector = rest(h, request={**h.table["request"], "url": url})
    outcome = connector.find([SHARED, "(415) 555-0177"])
    # {national} is the looked-up number's national significant number for every query;
    # {digits} is each query's own digits.
    assert h.vendor.queries == ["4155550177", "4155550177"]
    assert connector.render("(415) 555-0177")[1].endswith("?q=4155550177&perPage=100&d=4155550177")
    assert connector.render(SHARED)[1].endswith("&d=14155550177")
    assert sorted(c["name"] for c in outcome.contacts) == ["Alan Turing", "Barbara Liskov"]


def test_the_token_goes_where_the_template_puts_it_and_a_masked_render_hides_it(
    make_rest: MakeRest,
) -> None:
    h = make_rest("copper")
    connector = rest(h)
    connector.plan([SHARED])
    method, url, headers, body = connector.render(SHARED, page=3)
    assert (method, headers["X-PW-AccessToken"]) == ("POST", SECRET)
    assert SECRET not in url  # the token is in a header, never the URL
    assert body == {"phone_number": SHARED, "page_number": 3, "page_size": 200}
    masked = connector.render(SHARED, page=3, masked=True)
    assert masked[2]["X-PW-AccessToken"] == "****" and SECRET not in repr(masked)


# ----- paging ----------------------------------------------------------------------------------
def test_capsule_pages_are_followed_through_the_link_header(make_rest: MakeRest) -> None:
    h = make_rest("capsule", crowd(5))
    request = {**h.table["request"], "url": "/api/v2/parties/search?q={query}&perPage=2"}
    outcome = rest(h, request=request).find([CROWD])
    assert [c["name"] for c in outcome.contacts] == [f"Person {i:02d}" for i in range(5)]
    assert h.vendor.by_path[CAPSULE_SEARCH] == 3  # pages of 2, 2 and 1


def test_copper_full_pages_ask_for_the_next_one(make_rest: MakeRest) -> None:
    h = make_rest("copper", crowd(4))
    request = dict(h.table["request"])
    request["body"] = {**request["body"], "page_size": 2}
    paging = {"more": "length(@) == `2`", "max_pages": 5}
    outcome = rest(h, request=request, paging=paging).find([CROWD])
    assert len(outcome.contacts) == 4
    # Pages of 2 and 2, then an empty third page ends it.
    assert h.vendor.by_path[COPPER_SEARCH] == 3


def test_paging_stops_at_max_pages_and_says_the_answer_is_incomplete(
    make_rest: MakeRest,
) -> None:
    h = make_rest("capsule", crowd(5))
    request = {**h.table["request"], "url": "/api/v2/parties/search?q={query}&perPage=1"}
    connector = rest(h, request=request, paging={"link_header": True, "max_pages": 2})
    outcome = connector.find([CROWD])
    assert len(outcome.contacts) == 2
    assert h.vendor.by_path[CAPSULE_SEARCH] == 2
    assert connector.complete is False


def test_a_next_link_to_another_host_is_never_followed(make_rest: MakeRest) -> None:
    h = make_rest("copper", crowd(1))
    # A template whose next URL comes from the answer: a hostile or broken answer could send
    # the next request, and its X-PW-AccessToken, anywhere.
    evil = "http://203.0.113.9/steal"
    paging = {"next_url": f"'{evil}'"}
    with pytest.raises(CRMUnavailable, match="another host"):
        rest(h, paging=paging).find([CROWD])
    assert h.vendor.requests == 1


# ----- failures are never "no contact" ------------------------------------------------------
def test_a_records_expression_that_finds_nothing_is_a_failure_not_no_contact(
    make_rest: MakeRest,
) -> None:
    h = make_rest("capsule")
    response = {**h.table["response"], "records": "partys"}  # the typo a template author makes
    with pytest.raises(CRMUnavailable, match=r"response.records 'partys' gave NoneType"):
        rest(h, response=response).find([SHARED])


def test_an_expression_that_fails_on_a_record_names_its_key(make_rest: MakeRest) -> None:
    seed = [{"id": "m", "name": "Madonna", "phone": SHARED, "createdDate": 1546300800}]
    h = make_rest("capsule", seed)  # one name only: lastName is null
    response = {**h.table["response"], "name": "join(' ', [firstName, lastName])"}
    expected = "response.name \"join(' ', [firstName, lastName])\" failed (JMESPathTypeError)"
    with pytest.raises(CRMUnavailable, match=re.escape(expected)):
        rest(h, response=response).find([SHARED])
    # The shipped template filters the nulls out, so the same record maps.
    (madonna,) = rest(h).find([SHARED]).contacts
    assert madonna["name"] == "Madonna"


class NoContentCapsule(CapsuleSimulator):
    """Answers an empty search with 204 No Content, as some CRMs do."""

    def route(self, req: SimRequest) -> SimResponse:
        resp = super().route(req)
        if resp.status == 200 and not resp.body["parties"]:
            return SimResponse(204)
        return resp


def test_an_empty_200_body_is_a_failure_and_204_is_no_contact(make_rest: MakeRest) -> None:
    h = make_rest("capsule")
    h.vendor.inject("empty")
    with pytest.raises(CRMUnavailable, match="malformed"):
        rest(h).find([SHARED])
    h = make_rest("capsule", sim_class=NoContentCapsule)
    assert rest(h).find(["+14155550111"]).contacts == []
    assert h.vendor.requests == 1


# ----- rate limits -----------------------------------------------------------------------------
def test_capsule_rate_limit_headers_are_read_with_reset_in_epoch_seconds(
    make_rest: MakeRest,
) -> None:
    h = make_rest("capsule")
    h.vendor.set_rate_limit((50, 3600))
    state = rest(h).find([SHARED]).rate_limit
    assert state is not None and state.amount == 50 and state.remaining == 49
    window_end = h.vendor.window.start + 3600
    assert state.reset == pytest.approx(window_end, abs=1.5)


def test_capsule_429_waits_until_the_reset_header(make_rest: MakeRest) -> None:
    h = make_rest("capsule")
    h.vendor.set_rate_limit((1, 20))
    connector = rest(h)
    connector.find([SHARED])
    with pytest.raises(RateLimited) as info:
        connector.find([SHARED])
    # No Retry-After: the wait comes from X-RateLimit-Reset (epoch seconds, rounded up).
    assert info.value.retry_after_s is not None and 15 <= info.value.retry_after_s <= 21
    assert info.value.rate_limit is not None and info.value.rate_limit.remaining == 0


def test_a_status_the_template_names_is_rate_limited(make_rest: MakeRest) -> None:
    h = make_rest("copper")
    h.vendor.inject("503")
    limits = {"statuses": [429, 503]}
    with pytest.raises(RateLimited) as info:
        rest(h, rate_limit_headers=limits).find([SHARED])
    assert info.value.status_code == 503


# ----- verification ----------------------------------------------------------------------------
def test_records_a_wide_search_returns_are_verified_against_their_phones(
    make_rest: MakeRest,
) -> None:
    seed = [
        {"id": "a", "name": "Alan Turing", "phone": SHARED, "createdDate": 1546300800},
        # Capsule's global search also matches custom fields and addresses.
        {
            "id": "r",
            "name": "Ruth Harbour",
            "phone": "+16505550140",
            "address": SHARED[2:],
            "custom_fields": {"Emergency contact": SHARED},
            "createdDate": 1546300800,
        },
    ]
    h = make_rest("capsule", seed)
    outcome = rest(h).find([SHARED])
    assert [c["name"] for c in outcome.contacts] == ["Alan Turing"]
    assert outcome.dropped == 1  # counted once, by the base class's verification
    assert outcome.contacts[0]["phone"] == SHARED


def test_an_extension_lookup_matches_an_extension_kept_among_the_phones(
    make_rest: MakeRest,
) -> None:
    seed = [
        {"id": "d", "name": "Front Desk", "phone": "101", "createdDate": 1546300800},
        # Capsule's contains-search also returns 1010 and a number ending in 101.
        {"id": "m", "name": "Meeting Room", "phone": "1010", "createdDate": 1546300800},
        {"id": "o", "name": "Office", "phone": "+14155550101", "createdDate": 1546300800},
    ]
    h = make_rest("capsule", seed)
    outcome = rest(h).find(["101"], extension=True)
    assert [(c["name"], c["phone"]) for c in outcome.contacts] == [("Front Desk", "101")]
    assert outcome.dropped == 2  # the base class's extension rule: equal, not contained


def test_a_number_stored_in_another_format_is_verified_in_the_region(
    make_rest: MakeRest,
) -> None:
    seed = [{"id": "a", "name": "Ada", "phone": "415.555.0100", "createdDate": 1546300800}]
    h = make_rest("capsule", seed)
    # The query "4155550100" is contained in no stored string but its digits are searched:
    request = {**h.table["request"], "url": "/api/v2/parties/search?q=555.0100"}
    outcome = rest(h, request=request).find(["+14155550100"])
    assert [c["phone"] for c in outcome.contacts] == ["415.555.0100"]


# ----- dates -----------------------------------------------------------------------------------
def test_copper_unix_seconds_become_iso_utc(make_rest: MakeRest) -> None:
    seed = [
        {
            "id": "x",
            "name": "Grace",
            "phone": SHARED,
            "createdDate": "2019-07-01T08:00:00+02:00",
            "mostRecentActivityDate": 1714550400000,
        }
    ]
    h = make_rest("copper", seed)
    (grace,) = rest(h).find([SHARED]).contacts
    # The simulator sends date_created 1561960800 (2019-07-01T06:00:00Z, date -u -d @...)
    # and date_last_contacted 1714550400 (2024-05-01T08:00:00Z).
    assert grace["createdDate"] == "2019-07-01T06:00:00Z"
    assert grace["mostRecentActivityDate"] == "2024-05-01T08:00:00Z"


# ----- the contract from a bare URL (control protocol, crmsim/control.py) ------------------------
class TestCapsuleTemplateFromUrl(ConnectorContract):
    """The Capsule template against a simulator the contract knows by URL alone."""

    @pytest.fixture
    def harness(self, tmp_path: Path) -> Iterator[Harness]:
        sim = CapsuleSimulator().start()  # empty, and its own token: the contract seeds both
        table = {k: v for k, v in template("capsule").items() if k not in ("formats", "rate_limit")}
        table.pop("base_url")
        table.pop("token_env")
        yield Harness.from_url("rest", sim.url, tmp_path, **table)
        sim.stop()


class NoFaults(CapsuleSimulator):
    """A simulator that implements seeding but not ``POST /_contract/fault`` (``missing``)."""

    missing = ("/_contract/fault",)

    def _dispatch(self, req: SimRequest) -> tuple[SimResponse | None, str | None]:
        if req.path.startswith(self.missing):
            return SimResponse(404, {"message": "Could not find resource"}), None
        return super()._dispatch(req)


def test_a_control_endpoint_answering_404_skips_naming_it(tmp_path: Path) -> None:
    with NoFaults() as sim:
        table = {k: v for k, v in template("capsule").items() if k not in ("formats", "rate_limit")}
        table.pop("base_url")
        table.pop("token_env")
        h = Harness.from_url("rest", sim.url, tmp_path, **table)
        assert [c["name"] for c in h.find(SHARED).contacts] == ["Alan Turing", "Barbara Liskov"]
        with pytest.raises(pytest.skip.Exception, match="answers 404 on POST /_contract/fault"):
            h.can("inject")("503")
        sim.missing = ("/_contract/",)  # now a simulator without the protocol at all
        with pytest.raises(pytest.skip.Exception, match="answers 404 on POST /_contract/seed"):
            Harness.from_url("rest", sim.url, tmp_path, **table)
