"""The cached call pop in one Redis round trip (producers/pipeline.py ``_CHECK``): dedupe,
session merge, once-key, cache read and PUBLISH are one script call, as Redis's ``MONITOR``
sees them (commands a script runs are marked ``lua`` there); the pop is out before any
other round trip of the event (the call-log settle record that follows it)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from contact_lookup.core.request import LookupRequest
from producers.pipeline import _CHECK, EventPipeline, build_pipeline
from tests.conftest import settings_for
from tests.producers.conftest import DEMO_EXT, fixture, queued
from tests.redismonitor import monitor

NUMBER = "+14155550100"  # the caller of the inbound_ringing fixture, c-1001 in contacts.json


@pytest.fixture
def producer(pr_url: str, config_path: Path) -> Iterator[EventPipeline]:
    p = build_pipeline(settings_for(pr_url, config_path))
    p.recorded = True  # the fixture is a 2024 recording: its own clock
    yield p
    p.app.close()


def test_a_cached_call_pop_is_one_script_call_and_its_message_is_the_workers_shape(
    producer: EventPipeline, client: redis.Redis
) -> None:
    cached = producer.service.lookup("demo", LookupRequest(NUMBER))  # caches c-1001
    assert [c["id"] for c in cached["matchedContactInfo"]][:1] == ["c-1001"]
    client.script_load(_CHECK)
    pubsub = client.pubsub(ignore_subscribe_messages=True)
    pubsub.subscribe(f"callpop:809646016:{DEMO_EXT}")
    pubsub.get_message(timeout=1)
    outcomes = []
    seen = monitor(client, lambda: outcomes.extend(producer.handle(fixture("inbound_ringing"))))
    sent = [name for name, lua in seen if not lua]
    # The pop is published by the first round trip, the event script; the one after it is
    # the call-log settle rule's record of this (still open) call (core/supersede.py).
    assert sent[0] == "EVALSHA" and len(sent) <= 2
    second = [i for i, (_, lua) in enumerate(seen) if not lua][1:] or [len(seen)]
    assert ("PUBLISH", True) in seen[: second[0]]
    assert not {"GET", "SET", "PUBLISH"} & set(sent)
    [outcome] = outcomes
    assert outcome.action == "answered-from-cache"
    message = pubsub.get_message(timeout=2)
    assert message is not None
    # the same text the worker's callpop.publish would send for this result
    assert json.loads(message["data"]) == {
        "telephonySessionId": "s-a0d7d55c1e8b4N18f2a1c3d7e9A0001",
        "phoneNumber": NUMBER,
        "result": outcome.result,
    }
    assert outcome.result is not None
    ids = [c["id"] for c in outcome.result["matchedContactInfo"]]
    assert ids == ["c-1001", "createNewContact"]  # the placeholder ends the cached contacts
    pubsub.close()


def test_an_unreadable_cache_entry_is_dropped_and_the_call_pop_enqueued(
    producer: EventPipeline, client: redis.Redis
) -> None:
    key = producer.service.prepare("demo", LookupRequest(NUMBER)).cache_key
    client.set(key, "{not json")
    [outcome] = producer.handle(fixture("inbound_ringing"))
    assert outcome.action == "enqueued" and outcome.task_id
    assert client.get(key) is None
    assert len(queued(client, "call_pop")) == 1
    # a redelivery under a new uuid finds the once-key taken: no second pop
    again = {**fixture("inbound_ringing"), "uuid": "another-delivery"}
    [second] = producer.handle(again)
    assert second.action == "skipped" and "already done" in str(second.reason)
