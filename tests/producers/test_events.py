"""The pure mapping (producers.events) under fuzzing, and the Redis rules under concurrency."""

from __future__ import annotations

import copy
import threading
from pathlib import Path
from typing import Any

import redis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from contact_lookup.model.config import load_config
from producers.events import Job, Skip, plan
from producers.pipeline import build_pipeline
from tests.producers.conftest import FIXTURES, fixture, queued, settings_for

CONFIG = load_config(Path(__file__).resolve().parents[2] / "examples" / "contact-lookup.toml")
NAMES = sorted(p.stem for p in FIXTURES.glob("*.json"))
JUNK = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-5, 10**12),
    st.text(max_size=12),
    st.lists(st.integers(), max_size=2),
    st.dictionaries(st.text(max_size=3), st.none(), max_size=2),
)


def paths(value: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out = [prefix] if prefix else []
    if isinstance(value, dict):
        for k, v in value.items():
            out += paths(v, (*prefix, k))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            out += paths(v, (*prefix, i))
    return out


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(NAMES), st.data())
def test_plan_never_raises_on_missing_or_mistyped_fields(name: str, data: st.DataObject) -> None:
    event = copy.deepcopy(fixture(name))
    for _ in range(data.draw(st.integers(1, 4))):
        candidates = paths(event)
        if not candidates:
            break
        path = data.draw(st.sampled_from(candidates))
        parent: Any = event
        for part in path[:-1]:
            parent = parent[part]
        if isinstance(parent, dict) and data.draw(st.booleans()):
            del parent[path[-1]]  # a missing field
        else:
            parent[path[-1]] = data.draw(JUNK)  # a null or mistyped field
    result = plan(event, CONFIG)
    assert result.steps
    for step in result.steps:
        assert isinstance(step.outcome, Job | Skip)
        if isinstance(step.outcome, Skip):
            assert step.outcome.reason
        else:
            assert step.outcome.phone_number and step.outcome.connection == "demo"


def test_plan_of_things_that_are_not_notifications() -> None:
    for junk in (None, [], "text", 3, {"body": "x"}, {"event": 5, "body": []}):
        steps = plan(junk, CONFIG).steps
        assert len(steps) == 1 and isinstance(steps[0].outcome, Skip)


def test_bare_digits_are_extensions_on_calls_up_to_six_digits() -> None:
    def number(raw: str) -> tuple[str | None, bool | None]:
        event = copy.deepcopy(fixture("inbound_ringing"))
        event["body"]["parties"][0]["from"] = {"phoneNumber": raw}
        outcome = plan(event, CONFIG).steps[0].outcome
        return (
            (outcome.phone_number, outcome.is_extension)
            if isinstance(outcome, Job)
            else (None, None)
        )

    assert number("102") == ("102", True)
    assert number("123456") == ("123456", True)
    assert number("4155550100") == ("+14155550100", False)  # 7+ digits: a phone number
    assert number("14155550100") == ("+14155550100", False)
    assert number("+44 20 7946 0958") == ("+442079460958", False)
    assert number("1234567") == (None, None)  # not an extension, not a valid number


def test_concurrent_producers_send_one_call_pop_and_one_call_log(
    pr_url: str, config_path: Path, client: redis.Redis
) -> None:
    """Eight processes' worth of producers receive the same call from eight subscriptions
    at once: the compare-and-set and once-keys are atomic in Redis."""
    producers = [build_pipeline(settings_for(pr_url, config_path)) for _ in range(8)]
    for producer in producers:
        producer.recorded = True  # 2024 fixtures: judged by their own eventTimes
    stream = [fixture(n) for n in ("inbound_ringing", "answered", "disconnected")]
    barrier = threading.Barrier(len(producers))
    actions: list[str] = []
    lock = threading.Lock()

    def run(index: int) -> None:
        barrier.wait()
        for event in stream:
            outcomes = producers[index].handle({**event, "uuid": f"{index}-{event['uuid']}"})
            with lock:
                actions.extend(o.action for o in outcomes)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(producers))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(20)
    try:
        assert len(queued(client, "call_pop")) == 1 and len(queued(client, "call_log")) == 1
        assert actions.count("enqueued") == 2
        # one line per event, plus at most one call-log line from an event that was not the
        # Disconnected one but was the first to see the call ended (its events raced)
        assert 3 * len(producers) <= len(actions) <= 3 * len(producers) + 1
    finally:
        for p in producers:
            p.app.close()
