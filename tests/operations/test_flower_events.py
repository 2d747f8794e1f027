"""producers/flower_events.py without Flower: the events carry no contact data, and a broker
that is down costs the call pop nothing (the events are dropped on the sending thread)."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from producers import flower_events
from producers.pipeline import Outcome
from tasks.celery_app import create_app
from tests.conftest import settings_for


def test_the_events_of_a_cached_pop_name_no_one() -> None:
    pop = ("***0100", "demo", "call_pop", 1, 1_700_000_000.0, 0.004)
    events = flower_events.events_of(pop, "t-1")
    assert [kind for kind, _ in events] == ["task-received", "task-started", "task-succeeded"]
    received, succeeded = events[0][1], events[2][1]
    assert received["name"] == "call_pop.cached" and received["uuid"] == "t-1"
    assert (
        received["kwargs"]
        == "{'phoneNumber': '***0100', 'connection': 'demo', 'purpose': 'call_pop'}"
    )
    assert succeeded["runtime"] == 0.004
    assert succeeded["timestamp"] == pytest.approx(1_700_000_000.004)


def test_a_broker_that_is_down_never_fails_the_pop(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    app = create_app(settings_for("redis://127.0.0.1:1/0", tmp_path / "none.toml"))
    app.conf.broker_url = "redis://127.0.0.1:1/0"  # nothing listens on port 1
    app.conf.broker_connection_timeout = 1
    outcome = Outcome(
        "u-1",
        "answered-from-cache",
        purpose="call_pop",
        phone_number="+14155550100",
        connection="demo",
        result={"successful": True, "matchedContactInfo": [{"name": "Ada Lovelace"}]},
    )
    with caplog.at_level(logging.WARNING, "contact_lookup.flower_events"):
        flower_events.cached_pops(app, [outcome], started=0.0)  # returns at once, no raise
        sender = flower_events._sender(app)
        sender.flush(30)
    assert sender.pending.unfinished_tasks == 0  # sent nowhere, dropped
    messages = [r.getMessage() for r in caplog.records]
    assert len(messages) == 1 and messages[0].startswith(
        "Flower events of cached call pops dropped"
    )
    assert "Lovelace" not in caplog.text and "5550100" not in caplog.text
