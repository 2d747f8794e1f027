"""Real captured RingCentral streams (tests/fixtures/ringcentral/*.jsonl, SOURCES.md) through
the pipeline in order, reversed, shuffled and with the first half missing: exactly one call
log per call, for the party that talked, never for the IVR leg; a call pop only while ringing.
"""

from __future__ import annotations

import json
import random
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from producers.pipeline import EventPipeline, build_pipeline
from producers.telephony import REASONS, ReasonRule
from tests.conftest import flushed_db, purge_amqp_queues
from tests.producers.conftest import (
    FIXTURES,
    SALES_EXT,
    all_queued,
    executed,
    settings_for,
    write_config,
)

IVR_STREAM = "inbound-pstn-ivr-to-user.jsonl"
OUTBOUND_STREAM = "outbound-user-to-pstn.jsonl"
INTERNAL_STREAM = "internal-user-to-user.jsonl"
STREAMS = (IVR_STREAM, OUTBOUND_STREAM, INTERNAL_STREAM)
INTERNAL_CALLER_EXT = "979428016"  # the internal capture's calling user (ext. 11104)
USER_EXT = "809646016"  # the user's extension in both captures ([extensions] default: demo)
CALLER = "+14155550171"  # the PSTN party in both captures
assert SALES_EXT == "62242421016"  # the capture's IVR menu extension maps to "sales"
STATE_DB = 15  # the producers' state Redis, apart from the cache (tests/README.md)


def stream(name: str) -> list[dict[str, Any]]:
    lines = (FIXTURES / name).read_text().splitlines()
    return [json.loads(line) for line in lines if line.strip()]


def orders(events: list[dict[str, Any]]) -> Iterator[tuple[str, list[dict[str, Any]]]]:
    yield "in order", events
    yield "reversed", events[::-1]
    yield "first half missing", events[len(events) // 2 :]
    for seed in range(40):
        shuffled = list(events)
        random.Random(seed).shuffle(shuffled)
        yield f"shuffled (seed {seed})", shuffled


@pytest.fixture
def pipeline_for(pr_url: str, tmp_path: Path) -> Iterator[Any]:
    made: list[EventPipeline] = []

    def make(telephony: str = "") -> EventPipeline:
        # No countdown: the jobs land on the queue itself (on RabbitMQ too), where ``run``
        # applies the supersede rule to them; every event here arrives within the window.
        extensions = f'"{SALES_EXT}" = "sales"\ndefault = "demo"\n'
        path = write_config(tmp_path, extensions, "settle_seconds = 0\n" + telephony)
        producer = build_pipeline(settings_for(pr_url, path))
        producer.recorded = True  # 2020 captures: judged by their own eventTimes
        made.append(producer)
        return producer

    yield make
    for producer in made:
        producer.app.close()


def run(producer: EventPipeline, client: redis.Redis, events: list[dict[str, Any]]) -> Any:
    client.flushdb()
    purge_amqp_queues()  # on a RabbitMQ run the queues live there, not in this database
    producer._newest_event_time = None
    lines = [o.line() for e in events for o in producer.handle(e)]
    queues = all_queued(client)
    # Every call log decided is queued; "call_log" keeps those the worker executes (not
    # superseded by a later decision for the same call), "call_log_sent" all of them.
    queues["call_log_sent"] = queues["call_log"]
    queues["call_log"] = executed(producer.state, queues["call_log"])
    return lines, queues


# Per capture: the (connection, number, rcExtensionId) a call log may be for. The internal
# call's two users both talked; which one is logged depends on which events came in (with the
# first half missing the callee's Answered is never seen), but it is always exactly one.
LOGGABLE = {
    IVR_STREAM: {("demo", CALLER, USER_EXT)},
    OUTBOUND_STREAM: {("demo", CALLER, USER_EXT)},
    INTERNAL_STREAM: {("demo", "11104", USER_EXT), ("demo", "11101", INTERNAL_CALLER_EXT)},
}


@pytest.mark.parametrize("routing", [False, True], ids=["no routing_extensions", "routing"])
@pytest.mark.parametrize("name", STREAMS)
def test_every_capture_in_every_order_gets_exactly_one_call_log_never_for_a_leg(
    pipeline_for: Any, client: redis.Redis, name: str, routing: bool
) -> None:
    """Every real capture, in order, reversed, with the first half missing and 40 shuffles,
    with and without ``[telephony] routing_extensions``: exactly one call log, never for the
    IVR menu's extension, and it names the logged party's extension (its own CRM grant).
    Without routing_extensions the IVR leg is recognised from its own Disconnected
    (no reason, never answered, ``missedCall: false``), even when it arrives before the
    user's party was ever seen (shuffle seeds 7, 31 and 36 logged the IVR leg before)."""
    producer = pipeline_for(f'routing_extensions = ["{SALES_EXT}"]\n' if routing else "")
    for label, events in orders(stream(name)):
        _, queues = run(producer, client, events)
        logs = [
            (j["kwargs"]["connection"], j["kwargs"]["phoneNumber"], j["kwargs"]["rcExtensionId"])
            for j in queues["call_log"]
        ]
        assert len(logs) == 1 and logs[0] in LOGGABLE[name], (label, logs)
        assert logs[0][2] != SALES_EXT, label


def test_ivr_call_gets_one_call_log_for_the_user_in_any_order(
    pipeline_for: Any, client: redis.Redis
) -> None:
    """With the IVR menu declared (routing_extensions), every order gives exactly one call log,
    for the user's party on the user's connection; the IVR leg gets none and no call pop."""
    producer = pipeline_for(f'routing_extensions = ["{SALES_EXT}"]\n')
    for label, events in orders(stream(IVR_STREAM)):
        _, queues = run(producer, client, events)
        logs = queues["call_log"]
        assert len(logs) == 1, label
        assert logs[0]["kwargs"]["connection"] == "demo", label
        assert logs[0]["kwargs"]["phoneNumber"] == CALLER, label
        pops = queues["call_pop"]
        assert all(p["kwargs"]["callPop"]["rcExtensionId"] == USER_EXT for p in pops), label
        assert len(pops) <= 1, label


def test_ivr_leg_is_recognised_from_the_stream_alone(
    pipeline_for: Any, client: redis.Redis
) -> None:
    """Without routing_extensions: the IVR party ends with no reason, never answered, and the
    call goes on to the user's party, so the IVR leg is not logged, in order, reversed and
    with the first half missing."""
    producer = pipeline_for()
    events = stream(IVR_STREAM)
    for label, ordered in list(orders(events))[:3]:
        lines, queues = run(producer, client, ordered)
        assert [j["kwargs"]["connection"] for j in queues["call_log"]] == ["demo"], label
    lines, queues = run(producer, client, events)
    # live order: the user's Setup/Proceeding pop once; the call log comes with the last event
    assert [p["kwargs"]["callPop"]["rcExtensionId"] for p in queues["call_pop"]] == [
        SALES_EXT,
        USER_EXT,
    ]
    assert lines[-1]["action"] == "enqueued" and lines[-1]["purpose"] == "call_log"
    waiting = [x for x in lines if x["purpose"] == "call_log" and x["action"] == "skipped"]
    assert any("waits for the call to end" in x["reason"] for x in waiting)


def test_outbound_call_gets_one_call_log_in_any_order(
    pipeline_for: Any, client: redis.Redis
) -> None:
    producer = pipeline_for()
    for label, events in orders(stream(OUTBOUND_STREAM)):
        _, queues = run(producer, client, events)
        logs = queues["call_log"]
        assert [(j["kwargs"]["connection"], j["kwargs"]["phoneNumber"]) for j in logs] == [
            ("demo", CALLER)
        ], label
        assert not queues["call_pop"], label  # demo has outbound_pop = false


def test_a_call_pop_is_only_sent_while_the_party_rings(
    pipeline_for: Any, client: redis.Redis
) -> None:
    """The user's Answered (sequence 8) before its Setup (6) and Proceeding (7): no pop."""
    producer = pipeline_for(f'routing_extensions = ["{SALES_EXT}"]\n')
    events = stream(IVR_STREAM)
    by_seq = {e["body"]["sequence"]: e for e in events}
    lines, queues = run(producer, client, [by_seq[8], by_seq[6], by_seq[7]])
    assert not queues["call_pop"]
    assert [x["reason"].split(":")[0] for x in lines[1:]] == ["out of order", "out of order"]
    lines, queues = run(producer, client, [by_seq[6], by_seq[7], by_seq[8]])
    assert len(queues["call_pop"]) == 1
    assert lines[1]["reason"].startswith("already done: a call pop")


HAND_OVER = sorted(r for r, rule in REASONS.items() if rule is ReasonRule.HAND_OVER)


@pytest.mark.parametrize("reason", HAND_OVER)
def test_a_leg_that_hands_the_call_on_is_never_logged_in_any_order(
    pipeline_for: Any, client: redis.Redis, reason: str
) -> None:
    """The capture's first own leg ends with a hand-over reason (a transfer, pickup, park,
    queue leg...) instead of none: with no routing_extensions, every order tried gives one
    call log, for the user."""
    events = stream(IVR_STREAM)
    for event in events:
        for party in event["body"]["parties"]:
            if party["id"].endswith("-2") and party["status"]["code"] == "Disconnected":
                party["status"]["reason"] = reason
    producer = pipeline_for()
    for label, ordered in list(orders(events))[:13]:
        lines, queues = run(producer, client, ordered)
        assert [j["kwargs"]["connection"] for j in queues["call_log"]] == ["demo"], label
        leg = [x for x in lines if (x["reason"] or "").startswith(f"disconnected by {reason}")]
        if any(e["body"]["sequence"] == 5 for e in ordered):  # the leg's Disconnected
            assert len(leg) == 1 and leg[0]["purpose"] == "call_log", label


def test_delivery_marks_and_call_state_live_on_the_non_evicting_state_redis(
    pr_url: str, tmp_path: Path, client: redis.Redis
) -> None:
    """STATE_URL holds the dedupe marks, session hashes and once-keys (an evicting cache
    could forget a session and send its call log twice); the jobs still go to the broker."""
    config = write_config(tmp_path, 'default = "demo"\n')
    with flushed_db(STATE_DB) as state_url, redis.Redis.from_url(state_url) as state:
        producer = build_pipeline(settings_for(pr_url, config, state_url=state_url))
        producer.recorded = True
        try:
            for event in stream(OUTBOUND_STREAM):
                producer.handle(event)
        finally:
            producer.app.close()
        assert len(executed(state, all_queued(client)["call_log"])) == 1
        names = {k.decode() for k in state.keys("*")}
        assert any(":delivery:" in n for n in names) and any(":call:" in n for n in names)
        assert any(":once:call_log:" in n for n in names)
        assert not [k for k in client.keys("*") if b":delivery:" in k or b":call:" in k]


PARTIAL_STREAM = "outbound-user-to-pstn-partial.jsonl"
PARTIAL_USER_EXT = "170848004"  # ringcentral-call-control-js's test account and user
PARTIAL_CALLEE = "+14155550174"


def test_a_partial_real_stream_gets_exactly_one_call_log_in_any_order(
    pipeline_for: Any, client: redis.Redis
) -> None:
    """RingCentral's own call-control SDK test notifications: sequences 2, 3 and 8 of one
    unanswered outbound call (the user's Setup and Disconnected on the extension path, the
    PSTN party's Proceeding on the account path; the PSTN party's Disconnected is not in the
    material). In every order, and as an extension-level subscription sees it (2 and 8
    only): exactly one call log, for the user's extension. Before, the call stayed open
    whenever the PSTN party's Proceeding came before the user's Disconnected (a far end seen
    ringing kept 'every party seen has ended' false for ever)."""
    producer = pipeline_for()
    events = stream(PARTIAL_STREAM)
    own_path = [e for e in events if "/extension/" in e["event"]]
    assert [e["body"]["sequence"] for e in own_path] == [2, 8]
    for label, ordered in [*orders(events), ("extension path", own_path)]:
        _, queues = run(producer, client, ordered)
        logs = [
            (j["kwargs"]["phoneNumber"], j["kwargs"]["rcExtensionId"]) for j in queues["call_log"]
        ]
        assert logs == [(PARTIAL_CALLEE, PARTIAL_USER_EXT)], label
        assert not queues["call_pop"], label  # demo: outbound_pop = false
