"""The settle window (README "Event rules"; contact_lookup.core.supersede): a call log is
published with a countdown and a supersede token (``supersedeKey``, ``decisionVersion``); a
later event that changes whose call log it is publishes a newer decision, and the worker drops
the older one. Evaluated here on the queued jobs (``executed``), not by waiting the window.

The three cases the window exists for, each failing before it: a caller missed by user A who
then reaches colleague B (B talked: B's call log, even when A's end was seen first); a party
whose Answered was lost and whose far end is never seen (an extension-level subscription) is
logged, not taken for an IVR leg; and a party that arrives after every party seen had ended
still changes the decision: every order of a capture's events gives the in-order call log.
"""

from __future__ import annotations

import json
import random
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from contact_lookup.core import keys, supersede
from contact_lookup.model.errors import ConfigError
from producers.pipeline import EventPipeline, build_pipeline
from producers.telephony import SessionView, decision_version
from tests.conftest import AMQP_BROKER_URL, purge_amqp_queues
from tests.producers.conftest import (
    FIXTURES,
    SALES_EXT,
    all_queued,
    executed,
    settings_for,
    write_config,
)
from worker.checks import lines

CALLER = "+14155550171"
USER_A, USER_B = "809646016", "979428016"
SESSION = "s-settle-0001"


def stream(name: str) -> list[dict[str, Any]]:
    lines = (FIXTURES / name).read_text().splitlines()
    return [json.loads(line) for line in lines if line.strip()]


@pytest.fixture
def pipeline_for(pr_url: str, tmp_path: Path) -> Iterator[Any]:
    made: list[EventPipeline] = []

    def make(settle: float = 0) -> EventPipeline:
        extensions = f'"{SALES_EXT}" = "sales"\ndefault = "demo"\n'
        path = write_config(tmp_path, extensions, f"settle_seconds = {settle}\n")
        producer = build_pipeline(settings_for(pr_url, path))
        producer.recorded = True
        made.append(producer)
        return producer

    yield make
    for producer in made:
        producer.app.close()


def run(
    producer: EventPipeline, client: redis.Redis, events: list[dict[str, Any]]
) -> tuple[list[dict[str, Any]], list[dict[str, Any]], list[dict[str, Any]]]:
    """(output lines, call logs sent, call logs a worker executes)."""
    client.flushdb()
    purge_amqp_queues()
    producer._newest_event_time = None
    lines = [o.line() for e in events for o in producer.handle(e)]
    sent = all_queued(client)["call_log"]
    return lines, sent, executed(producer.state, sent)


def who(jobs: list[dict[str, Any]]) -> list[tuple[str, str]]:
    return [(j["kwargs"]["phoneNumber"], j["kwargs"]["rcExtensionId"]) for j in jobs]


def event(
    seq: int, pid: str, ext: str, code: str, *, missed: bool = False, path_ext: str = ""
) -> dict[str, Any]:
    """One telephony notification in RingCentral's shape (as in the captures of
    tests/fixtures/ringcentral/): one own Inbound party from the PSTN caller."""
    where = f"/extension/{path_ext}" if path_ext else ""
    return {
        "uuid": f"u-{seq}-{pid}",
        "event": f"/restapi/v1.0/account/809646016{where}/telephony/sessions",
        "timestamp": f"2026-11-30T05:00:{seq:02d}.000Z",
        "subscriptionId": "sub",
        "ownerId": "809646016",
        "body": {
            "sequence": seq,
            "sessionId": "1",
            "telephonySessionId": SESSION,
            "eventTime": f"2026-11-30T05:00:{seq:02d}.000Z",
            "parties": [
                {
                    "accountId": "809646016",
                    "extensionId": ext,
                    "id": pid,
                    "direction": "Inbound",
                    "to": {"phoneNumber": "+16505550100", "extensionId": ext},
                    "from": {"phoneNumber": CALLER},
                    "status": {"code": code, "rcc": False},
                    "missedCall": missed,
                    "standAlone": False,
                    "muted": False,
                }
            ],
        },
    }


def test_a_caller_missed_by_one_user_who_reaches_another_is_logged_for_the_one_who_talked(
    pipeline_for: Any, client: redis.Redis
) -> None:
    """User A rings and misses the call (Disconnected, ``missedCall: true``, no reason) before
    user B's party is ever seen; B then answers and hangs up. Before the window A's end took
    the call's one call log at once. Now A's decision is superseded when B appears: one call
    log runs, for B."""
    producer = pipeline_for()
    missed = [
        event(2, "p-a", USER_A, "Setup"),
        event(3, "p-a", USER_A, "Disconnected", missed=True),
    ]
    talked = [
        event(4, "p-b", USER_B, "Setup"),
        event(5, "p-b", USER_B, "Answered"),
        event(6, "p-b", USER_B, "Disconnected"),
    ]
    _, sent, runs = run(producer, client, missed + talked)
    assert who(sent) == [(CALLER, USER_A), (CALLER, USER_B)]  # A's early decision went out
    assert who(runs) == [(CALLER, USER_B)]
    versions = [j["kwargs"]["decisionVersion"] for j in sent]
    assert versions[0] < versions[1]
    assert {j["kwargs"]["supersedeKey"] for j in sent} == {supersede.key(SESSION)}
    for order in (missed[::-1] + talked, talked + missed, talked[::-1] + missed[::-1]):
        assert who(run(producer, client, order)[2]) == [(CALLER, USER_B)]


def test_once_a_call_log_ran_no_later_event_publishes_another(
    pipeline_for: Any, client: redis.Redis
) -> None:
    """User B's events arrive after A's call log already ran (after the window): the worker's
    claim marked A's decision executed, so the call gets no second call log, and the line
    says why; a job of an older version is then still dropped."""
    producer = pipeline_for()
    _, sent, _ = run(producer, client, [event(3, "p-a", USER_A, "Disconnected", missed=True)])
    (job,) = sent
    token = (job["kwargs"]["supersedeKey"], job["kwargs"]["decisionVersion"])
    assert supersede.claim(producer.state, *token) is None  # the worker runs it
    late = [
        o.line()
        for n, c in ((4, "Setup"), (5, "Answered"), (6, "Disconnected"))
        for o in producer.handle(event(n, "p-b", USER_B, c))
    ]
    assert all_queued(client)["call_log"] == sent  # nothing more
    assert late[-1]["reason"] == (
        "already done: a call log for this call already ran; later events do not change it"
    )
    assert supersede.claim(producer.state, token[0], token[1] - 1) == token[1]


def test_a_party_whose_answered_was_lost_is_logged_on_an_extension_subscription(
    pipeline_for: Any, client: redis.Redis
) -> None:
    """The real capture's user party as its own extension-level subscription sees it, with
    its Answered, Hold and Answered (8-10) lost: Setup 6, Proceeding 7, Disconnected 11 (no
    reason, ``missedCall: false``); the PSTN caller's party (account level) is never seen.
    Before, that end was taken for an IVR menu's and the call got no call log at all."""
    producer = pipeline_for()
    events = [
        e
        for e in stream("inbound-pstn-ivr-to-user.jsonl")
        if e["event"].endswith(f"/extension/{USER_A}/telephony/sessions")
        and e["body"]["sequence"] not in (8, 9, 10)
    ]
    assert [e["body"]["sequence"] for e in events] == [6, 7, 11]
    for ordered in (events, events[::-1]):
        _, _, runs = run(producer, client, ordered)
        assert who(runs) == [(CALLER, USER_A)]


CAPTURES = (
    "inbound-pstn-ivr-to-user.jsonl",
    "internal-user-to-user.jsonl",
    "outbound-user-to-pstn.jsonl",
)


@pytest.mark.parametrize("name", CAPTURES)
def test_any_order_of_the_same_events_gives_the_in_order_call_log(
    pipeline_for: Any, client: redis.Redis, name: str
) -> None:
    """A party that arrives after every party seen had ended still changes the decision:
    whatever the order, the call log that runs is the one the whole call decides (the
    internal capture logged the caller or the callee depending on which Disconnected came
    first; the IVR capture logged the menu whenever its Disconnected came first, before
    ``missedCall`` was read)."""
    producer = pipeline_for()
    events = stream(name)
    expected = who(run(producer, client, events)[2])
    assert len(expected) == 1
    for seed in range(40):
        shuffled = list(events)
        random.Random(seed).shuffle(shuffled)
        _, _, runs = run(producer, client, shuffled)
        assert who(runs) == expected, seed
        assert SALES_EXT not in {j["kwargs"]["rcExtensionId"] for j in runs}


def test_a_call_log_waits_the_settle_window_and_a_changed_decision_gets_a_higher_version(
    pipeline_for: Any, client: redis.Redis
) -> None:
    """``settle_seconds`` is the call log's countdown (the message's ``eta`` on Redis; on
    RabbitMQ a delayed delivery); the superseded job keeps its lower version."""
    producer = pipeline_for(settle=7)
    events = [
        event(2, "p-a", USER_A, "Setup"),
        event(3, "p-a", USER_A, "Disconnected", missed=True),
        event(4, "p-b", USER_B, "Setup"),
        event(5, "p-b", USER_B, "Disconnected", missed=True),
    ]
    client.flushdb()
    purge_amqp_queues()
    lines = [o.line() for e in events for o in producer.handle(e)]
    logged = [x for x in lines if x["purpose"] == "call_log" and x["action"] == "enqueued"]
    assert len(logged) == 2
    if AMQP_BROKER_URL is None:  # the Redis transport keeps the eta in the message
        raw = [json.loads(m) for m in client.lrange("call_log", 0, -1)]
        assert all(m["headers"]["eta"] for m in raw)
        assert len(raw) == 2
    stored = supersede.newest(producer.state, supersede.key(SESSION))
    hashed = producer.state.hgetall(keys.telephony_session(SESSION))
    view = SessionView.from_hash({k.decode(): v.decode() for k, v in hashed.items()})
    assert stored == decision_version(view)


def test_the_decision_version_grows_with_every_change_to_the_session(
    pipeline_for: Any, client: redis.Redis
) -> None:
    """Whatever the order, each event that changes the session hash raises the version, and
    one that changes nothing (a second delivery from another subscription) keeps it."""
    producer = pipeline_for()
    events = stream("inbound-pstn-ivr-to-user.jsonl")
    for seed in range(10):
        shuffled = list(events)
        random.Random(seed).shuffle(shuffled)
        client.flushdb()
        before: dict[bytes, bytes] = {}
        version = -1
        for e in [*shuffled, {**shuffled[0], "uuid": "again"}]:
            producer.handle(e)
            after = producer.state.hgetall(keys.telephony_session(session_of(e)))
            view = SessionView.from_hash({k.decode(): v.decode() for k, v in after.items()})
            now = decision_version(view)
            if after != before:
                assert now > version, seed
            else:
                assert now == version, seed
            before, version = after, now


def session_of(e: dict[str, Any]) -> str:
    return str(e["body"]["telephonySessionId"])


def test_settle_seconds_is_checked_when_the_file_is_loaded(pr_url: str, tmp_path: Path) -> None:
    """Refused at start-up by every command: not a number, negative, above the bound, or not
    below VISIBILITY_TIMEOUT (a call log waits that long on a worker, like a retry's
    countdown)."""
    for bad, words in (
        ('"10"', "settle_seconds must be a number"),
        ("-1", "settle_seconds must be a number"),
        ("301", "from 0 to 300"),
        ("true", "settle_seconds must be a number"),
    ):
        path = write_config(tmp_path, 'default = "demo"\n', f"settle_seconds = {bad}\n")
        with pytest.raises(ConfigError, match=words):
            build_pipeline(settings_for(pr_url, path))
    path = write_config(tmp_path, 'default = "demo"\n', "settle_seconds = 120\n")
    short = settings_for(pr_url, path, visibility_timeout_s=100, retry_max_delay_s=30)
    with pytest.raises(ConfigError, match=r"settle_seconds=120 must be below VISIBILITY_TIMEOUT"):
        build_pipeline(short)
    # a starting worker and `contact-lookup check` refuse it too (worker/checks.py)
    first = next(lines(short, probe=False))
    assert (first.ok, first.item) == (False, "connections file"), first
    assert "settle_seconds=120 must be below VISIBILITY_TIMEOUT=100" in first.detail
    producer = build_pipeline(settings_for(pr_url, path))  # default VISIBILITY_TIMEOUT 600
    assert producer.config.settle_seconds == 120
    producer.app.close()
