"""The limiter's pure parts: budgets, the call-pop reserve, the sliding-window rule (with an
injected clock), and how the guard reads the CRM's own rate-limit signals."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from contact_lookup.connectors.registry import connector_class, known_crms
from contact_lookup.core.guard import DEFAULT_HOLD_OFF_S, crm_wait_s, reported_wait_s
from contact_lookup.core.ratelimit import (
    Limit,
    decide,
    limit_for,
    reserve_tokens,
)
from contact_lookup.model.config import Connection, parse_config
from contact_lookup.model.errors import ConfigError, RateLimited, RateLimitState


@pytest.mark.parametrize(
    ("requests", "share", "reserve"),
    [
        (50, 0.2, 10),
        (10, 0.2, 2),
        (25, 0.2, 5),
        (4, 0.2, 1),
        (2, 0.2, 1),
        (1, 0.2, 0),
        (10, 0.0, 0),
        (10, 0.99, 9),
        (3, 0.5, 2),
    ],
)
def test_reserve_rounds_up_but_leaves_others_a_token(
    requests: int, share: float, reserve: int
) -> None:
    assert reserve_tokens(requests, share) == reserve


def test_capacity_and_hold() -> None:
    limit = Limit(10, 1.0, reserve=2)
    assert (limit.capacity(priority=True), limit.capacity(priority=False)) == (10, 8)
    assert limit.hold_s == pytest.approx(1.1)  # 10% slack for time in flight
    assert Limit(50, 60.0).hold_s == pytest.approx(61.0)  # slack capped at 1 s


def conn(crm: str = "clio", **kw: Any) -> Connection:
    options = kw.pop("options", {})
    return Connection(name="c", crm=crm, options=options, **kw)


def test_defaults_by_crm_are_the_published_limits() -> None:
    defaults = {crm: connector_class(crm).default_rate_limit for crm in known_crms()}
    assert defaults == {
        "json": None,  # a local file: not limited
        "clio": (50, 60.0),
        "pipedrive": (10, 2.0),
        "hubspot": (4, 1.0),
        "insightly": (10, 1.0),
        "bullhorn": (10, 1.0),
        "salesforce": (25, 1.0),
        "rest": None,  # any CRM: its template's connection sets rate_limit
    }
    assert limit_for(conn("clio"), defaults["clio"]) == Limit(50, 60.0, reserve=10)
    assert limit_for(conn("hubspot"), defaults["hubspot"]) == Limit(4, 1.0, reserve=1)


def test_connection_rate_limit_overrides_and_no_default_is_unlimited() -> None:
    clio = (50, 60.0)
    assert limit_for(conn("clio", rate_limit="5/2"), clio) == Limit(5, 2.0, reserve=1)
    assert limit_for(conn("json")) is None
    assert limit_for(conn("somecrm")) is None  # no default: not limited
    assert limit_for(conn("somecrm", rate_limit="30/1")) == Limit(30, 1.0, reserve=6)
    assert limit_for(conn("clio", rate_reserve=0.5), clio) == Limit(50, 60.0, 25)
    assert limit_for(conn("clio", rate_reserve=0), clio) == Limit(50, 60.0, 0)


@pytest.mark.parametrize("bad", [1, 1.5, -0.1, "0.2", True])
def test_bad_rate_reserve_names_the_connection(bad: object) -> None:
    with pytest.raises(ConfigError, match="'c': rate_reserve"):
        parse_config({"connections": {"c": {"crm": "clio", "rate_reserve": bad}}}, Path("."))


# ----- decide(): the sliding-window rule, now injected -------------------------------------
HOLD = 1.0


def test_empty_window_grants() -> None:
    d = decide([], now=100.0, tokens=3, capacity=3, hold_s=HOLD)
    assert d.granted and d.wait_s == 0 and d.used == 0


def test_full_window_waits_for_the_oldest_token() -> None:
    stamps = [100.1, 100.2, 100.3]
    d = decide(stamps, now=100.5, tokens=1, capacity=3, hold_s=HOLD)
    assert not d.granted and d.used == 3
    assert d.wait_s == pytest.approx(0.6)  # 100.1 + 1.0 - 100.5
    # exactly when the oldest leaves the window, a token is free again
    assert decide(stamps, now=101.1, tokens=1, capacity=3, hold_s=HOLD).granted
    assert not decide(stamps, now=101.0999, tokens=1, capacity=3, hold_s=HOLD).granted


def test_several_tokens_wait_for_as_many_to_expire() -> None:
    stamps = [100.3, 100.1, 100.2]  # order does not matter
    two = decide(stamps, now=100.5, tokens=2, capacity=4, hold_s=HOLD)
    three = decide(stamps, now=100.5, tokens=3, capacity=4, hold_s=HOLD)
    assert not two.granted and two.wait_s == pytest.approx(0.6)  # one must go: 100.1
    assert not three.granted and three.wait_s == pytest.approx(0.7)  # two must go: 100.2
    assert decide(stamps, now=100.5, tokens=1, capacity=4, hold_s=HOLD).granted


def test_reserve_rule_call_pops_get_the_last_tokens() -> None:
    limit = Limit(10, 1.0, reserve=2)
    eight = [100.0 + i / 100 for i in range(8)]
    pop = limit.capacity(priority=True)
    other = limit.capacity(priority=False)
    # eight taken: others are out (only the reserve is left), call pops still get two
    assert not decide(eight, 100.5, 1, other, HOLD).granted
    assert decide(eight, 100.5, 1, pop, HOLD).granted
    assert decide(eight, 100.5, 2, pop, HOLD).granted
    assert not decide(eight, 100.5, 3, pop, HOLD).granted
    # seven taken: one more for others (leaving exactly the reserve), never two
    assert decide(eight[:7], 100.5, 1, other, HOLD).granted
    assert not decide(eight[:7], 100.5, 2, other, HOLD).granted


def test_hold_off_overrides_a_free_window() -> None:
    d = decide([], now=100.0, tokens=1, capacity=5, hold_s=HOLD, blocked_until=102.5)
    assert not d.granted and d.wait_s == pytest.approx(2.5)
    assert decide([], now=102.5, tokens=1, capacity=5, hold_s=HOLD, blocked_until=102.5).granted
    # the longer of the two waits wins
    d = decide([100.0], now=100.2, tokens=1, capacity=1, hold_s=HOLD, blocked_until=100.5)
    assert d.wait_s == pytest.approx(0.8)


def test_a_request_larger_than_the_budget_goes_into_an_empty_window_only() -> None:
    assert decide([], now=100.0, tokens=5, capacity=3, hold_s=HOLD).granted
    d = decide([100.0], now=100.5, tokens=5, capacity=3, hold_s=HOLD)
    assert not d.granted and d.wait_s == pytest.approx(0.5)


# ----- the CRM's own signals ---------------------------------------------------------------
def test_crm_wait_prefers_retry_after_then_reset_then_a_default() -> None:
    assert crm_wait_s(RateLimited(retry_after_s=7.0)) == 7.0
    reset = RateLimited(retry_after_s=None, rate_limit=RateLimitState(remaining=0, reset=130.0))
    assert crm_wait_s(reset, now=100.0) == 30.0
    assert crm_wait_s(RateLimited(retry_after_s=None)) == DEFAULT_HOLD_OFF_S


def test_remaining_zero_with_a_reset_holds_off_until_the_reset() -> None:
    def result(**tracking: Any) -> dict[str, Any]:
        return {"successful": True, "extraDataTracking": tracking}

    assert reported_wait_s(result(ratelimitRemaining=0, ratelimitReset=105), now=100.0) == 5.0
    assert reported_wait_s(result(ratelimitRemaining=1, ratelimitReset=105), now=100.0) == 0.0
    assert reported_wait_s(result(ratelimitRemaining=0), now=100.0) == 0.0  # no reset: no hold
    assert reported_wait_s(result(ratelimitRemaining=0, ratelimitReset=90), now=100.0) == 0.0
    assert reported_wait_s({"successful": True}) == 0.0
