"""The settle window end to end: the event pipeline publishes call logs with the countdown
``[telephony] settle_seconds`` (1 s here) and a supersede token; a real in-process worker
runs the newest decision and drops the superseded one without a CRM request, with a result
that says so and is neither a failure nor a failed task in Flower. On ``make test-amqp`` the
same test runs on RabbitMQ, where the countdown is a delayed delivery."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from celery.contrib.testing.worker import start_worker
from celery.result import AsyncResult
from celery.signals import task_prerun
from celery.utils.saferepr import saferepr

import tasks.find_contact  # noqa: F401  (registers the shared task)
from contact_lookup.model.purpose import PURPOSES
from producers.pipeline import EventPipeline, build_pipeline
from tasks.events import rewrite
from tests.conftest import settings_for
from tests.fakecrm import SEED, FakeCRM, fake_toml
from tests.producers.test_settle_window import USER_A, USER_B, event

SETTLE_S = 1  # RabbitMQ's delayed delivery counts whole seconds, at least one
NUMBER_A, NUMBER_B = "+14155550101", "+14155550103"  # in the fake CRM's SEED


@pytest.fixture
def crm() -> Iterator[FakeCRM]:
    with FakeCRM(SEED, token="tok-settle") as sim:
        yield sim


@pytest.fixture
def producer(
    tmp_path: Path, redis_url: str, crm: FakeCRM, monkeypatch: pytest.MonkeyPatch
) -> Iterator[EventPipeline]:
    toml = tmp_path / "cl.toml"
    toml.write_text(
        fake_toml(crm)
        + '\n[extensions]\ndefault = "fake"\n'
        + f"\n[telephony]\nsettle_seconds = {SETTLE_S}\n"
    )
    monkeypatch.setenv(crm.token_env, crm.token)
    pipeline = build_pipeline(settings_for(redis_url, toml))
    pipeline.recorded = True
    with start_worker(
        pipeline.app,
        pool="threads",
        concurrency=2,
        perform_ping_check=False,
        queues=list(PURPOSES),
        shutdown_timeout=10,
    ):
        yield pipeline
    pipeline.app.close()


def from_caller(e: dict[str, Any], number: str) -> dict[str, Any]:
    for party in e["body"]["parties"]:
        party["from"] = {"phoneNumber": number}
    return e


def test_a_superseded_call_log_is_dropped_without_a_crm_request(
    producer: EventPipeline, crm: FakeCRM
) -> None:
    """User A misses the call, then user B answers and hangs up: A's call log (decided when
    A's end was all there was) is superseded by B's. The two parties show different numbers
    so that a lookup for A would be counted by the CRM (no Setup events: no call pops, whose
    lookups would count too)."""
    started: dict[str, float] = {}

    def record(task_id: str = "", **_: Any) -> None:
        started[task_id] = time.monotonic()

    events = [
        from_caller(event(3, "p-a", USER_A, "Disconnected", missed=True), NUMBER_A),
        from_caller(event(5, "p-b", USER_B, "Answered"), NUMBER_B),
        from_caller(event(6, "p-b", USER_B, "Disconnected"), NUMBER_B),
    ]
    task_prerun.connect(record, weak=False)
    try:
        sent_at = time.monotonic()
        lines = [o.line() for e in events for o in producer.handle(e)]
        logs = [x for x in lines if x["purpose"] == "call_log" and x["action"] == "enqueued"]
        assert [x["phoneNumber"] for x in logs] == [NUMBER_A, NUMBER_B]
        results = [AsyncResult(x["taskId"], app=producer.app).get(timeout=30) for x in logs]
    finally:
        task_prerun.disconnect(record)
    dropped, logged = results
    assert dropped["superseded"] is True and dropped["successful"] is True
    assert dropped["matchedContactInfo"] == []
    assert (
        dropped["extraDataTracking"]["decisionVersion"]
        < (dropped["extraDataTracking"]["newestDecisionVersion"])
    )
    assert logged["successful"] is True and "superseded" not in logged
    assert [c["id"] for c in logged["matchedContactInfo"]] == ["f-3"]  # B's caller
    assert crm.requests == 1  # B's lookup only
    # Flower: a succeeded task, not a failed lookup
    assert rewrite("task-succeeded", {"result": saferepr(dropped)})[0] == "task-succeeded"
    # Neither ran before its countdown (the settle window)
    assert all(started[x["taskId"]] - sent_at >= SETTLE_S * 0.9 for x in logs)
