import json
import random
from typing import Any

import pytest

from contact_lookup.core.request import LookupRequest
from contact_lookup.model.errors import CRMUnavailable, InvalidInput, RateLimited
from tasks import backoff
from tasks.enqueue import task_kwargs
from tasks.find_contact import parse_kwargs


def test_retry_after_is_honoured_and_capped() -> None:
    assert backoff.delay_s(RateLimited(retry_after_s=7.25), 0) == 7.25
    assert backoff.delay_s(RateLimited(retry_after_s=10_000), 3) == backoff.MAX_DELAY_S


def test_exponential_backoff_with_jitter_stays_within_bounds() -> None:
    rng = random.Random(1)
    for attempt in range(12):
        ceiling = min(backoff.MAX_DELAY_S, backoff.BASE_DELAY_S * 2**attempt)
        waits = {backoff.delay_s(CRMUnavailable("x"), attempt, rng) for _ in range(50)}
        assert all(ceiling / 2 <= w <= ceiling for w in waits)
        assert len(waits) > 1  # jittered, so a burst does not retry in lock step
    assert backoff.delay_s(RateLimited(retry_after_s=None), 2, rng) <= 4


def test_task_kwargs_round_trip_through_parse() -> None:
    query = LookupRequest(
        "+14155550100",
        purpose="call_log",
        overriding_format="(***) ***-****",
        is_extension=False,
        force_refresh=True,
        debug=True,
        resolve="first-alphabetical",
    )
    kwargs = task_kwargs("demo", query, {"rcAccountId": "1", "rcExtensionId": "2"})
    assert kwargs["phoneNumber"] == "+14155550100" and kwargs["isForceRefreshAccountData"]
    conn, parsed, pop = parse_kwargs(kwargs)
    assert (conn, parsed, pop) == ("demo", query, {"rcAccountId": "1", "rcExtensionId": "2"})


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"phoneNumber": "+1"}, "connection"),
        ({"connection": "demo"}, "phoneNumber"),
        ({"connection": "demo", "phoneNumber": 5}, "phoneNumber"),
        ({"connection": "demo", "phoneNumber": "1", "purpose": "x"}, "purpose"),
        ({"connection": "demo", "phoneNumber": "1", "debug": "yes"}, "debug"),
        ({"connection": "demo", "phoneNumber": "1", "resolve": 3}, "resolve"),
        ({"connection": "demo", "phoneNumber": "1", "token": "x"}, "Unknown task arguments"),
        ({"connection": "demo", "phoneNumber": "1", "callPop": {"rcAccountId": "1"}}, "callPop"),
    ],
)
def test_bad_kwargs_are_reported(kwargs: dict, message: str) -> None:
    with pytest.raises(InvalidInput, match=message):
        parse_kwargs(kwargs)


def test_limiter_deferrals_are_told_apart_and_jittered() -> None:
    own = RateLimited(retry_after_s=2.0, status_code=None)  # the shared limiter, no request
    crm = RateLimited(retry_after_s=2.0)  # the CRM's 429
    assert backoff.is_deferral(own) and not backoff.is_deferral(crm)
    assert not backoff.is_deferral(CRMUnavailable("x"))
    rng = random.Random(3)
    # a batch job: uniform over [wait, 2 x wait] (here 2-4 s), so deferred jobs do not stampede
    waits = sorted(backoff.deferral_delay_s(own, 10.0, rng) for _ in range(400))
    assert waits[0] >= 2.0 and waits[-1] <= 4.0
    quarters = [sum(2 + q / 2 <= w < 2.5 + q / 2 for w in waits) for q in range(4)]
    assert all(70 <= n <= 130 for n in quarters), quarters  # about 100 in each half second
    # never wider than one window: a 30 s wait in a 5 s window wakes within 30-35 s
    late = RateLimited(retry_after_s=30.0, status_code=None)
    assert all(30.0 <= backoff.deferral_delay_s(late, 5.0, rng) <= 35.0 for _ in range(50))
    # a call pop: 10 % jitter only (its deadline leaves no room)
    assert all(
        2.0 <= backoff.deferral_delay_s(own, 10.0, rng, priority=True) <= 2.3 for _ in range(50)
    )
    soon = RateLimited(retry_after_s=0.01, status_code=None)
    assert backoff.deferral_delay_s(soon, 2.0, rng) >= backoff.MIN_DEFERRAL_S
    # the stress setting: the limiter's exact wait, as short as it allows
    assert backoff.deferral_delay_s(soon, 10.0, rng, spread=False) == 0.01


def test_a_deferral_reason_keeps_its_wake_up_time_through_json() -> None:
    reason = backoff.Deferred("deferred until 01:02:03Z", 1796000523.456)
    assert str(reason) == "deferred until 01:02:03Z"
    assert backoff.Deferred(*json.loads(json.dumps(reason.args))).until == 1796000523.456


# ----- the retry decision, pure (tasks/backoff.decide_retry) -------------------------------
def _decide(exc: Any, purpose: str = "call_log", state: Any = None, **kw: Any) -> Any:
    from tasks.backoff import decide_retry

    kw.setdefault("now", 1000.0)
    kw.setdefault("deadline", None)
    return decide_retry(exc, purpose, state or {}, rng=random.Random(7), **kw)


def test_a_crm_failure_retries_with_backoff_and_counts_a_crm_retry() -> None:

    d = _decide(CRMUnavailable("503", status_code=503), state={"waits": [1.0], "crmRetries": 1})
    assert d.retry and not d.deferral and 1.0 <= d.wait_s <= 2.0
    assert d.state == {"waits": [1.0, d.wait_s], "crmRetries": 2, "rateLimit": {}}


def test_a_deferral_does_not_count_against_the_crm_retries() -> None:
    deferred = RateLimited(retry_after_s=3.0, status_code=None)  # the limiter's own: no HTTP
    d = _decide(deferred, state={"waits": [], "crmRetries": 10})  # call_log allows 10
    assert d.retry and d.deferral and d.state["crmRetries"] == 10
    assert 3.0 <= d.wait_s <= 6.0  # spread after the limiter's wait, at most that wait again


def test_out_of_crm_retries_gives_up_but_deferrals_do_not() -> None:
    crm_429 = RateLimited(retry_after_s=2.0, status_code=429)
    gave_up = _decide(crm_429, state={"waits": [1.0] * 10, "crmRetries": 10})
    assert not gave_up.retry and gave_up.why.startswith("Gave up after 10 retries")


def test_a_call_pop_gives_up_when_the_wait_outlasts_its_deadline() -> None:
    crm_429 = RateLimited(retry_after_s=30.0, status_code=429)
    d = _decide(crm_429, "call_pop", now=1000.0, deadline=1010.0)
    assert not d.retry and d.too_late and d.wait_s == 30.0
    assert _decide(crm_429, "call_pop", now=1000.0, deadline=1031.0).retry


def test_the_cap_and_the_brokers_shortest_countdown_bound_the_wait() -> None:
    crm_429 = RateLimited(retry_after_s=500.0, status_code=429)
    assert _decide(crm_429, cap_s=120.0).wait_s == 120.0
    quick = RateLimited(retry_after_s=0.2, status_code=429)
    assert _decide(quick, min_countdown_s=1.0).wait_s == 1.0  # RabbitMQ: whole seconds
