"""The cached call pop in one Redis round trip (producers/fastpath.py), on a real Redis.

The fast path must publish exactly what the three-round-trip path publishes, in one round
trip, and leave every event rule (duplicates, once per party, cache misses) as it was.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from contact_lookup.compose import load_checked_config
from contact_lookup.connectors.registry import ConnectorFactory
from contact_lookup.core.cache import ContactCache
from contact_lookup.core.request import LookupRequest
from contact_lookup.core.service import LookupService
from producers.pipeline import EventPipeline
from tasks.celery_app import ContactLookupCelery
from tests.producers.conftest import DEMO_EXT, fixture, queued

CHANNEL = f"callpop:809646016:{DEMO_EXT}"


class CountingRedis(redis.Redis):
    """A real Redis client that counts the commands it sends (one per round trip here)."""

    sent = 0

    def execute_command(self, *args: Any, **options: Any) -> Any:
        self.sent += 1
        return super().execute_command(*args, **options)


@pytest.fixture
def counting(pr_url: str) -> Iterator[CountingRedis]:
    client = CountingRedis.from_url(pr_url)
    yield client
    client.close()


def pipeline(
    events: redis.Redis, cache: redis.Redis, config_path: Path, app: ContactLookupCelery
) -> EventPipeline:
    config = load_checked_config(str(config_path))
    service = LookupService(config, ContactCache(cache, 3600), ConnectorFactory())
    return EventPipeline(events, app, config, service)


def ringing(uuid: str, session: str) -> dict[str, Any]:
    body = copy.deepcopy(fixture("inbound_ringing"))
    body["uuid"] = uuid
    body["body"]["telephonySessionId"] = session
    return body


def published(pubsub: Any) -> bytes:
    message = pubsub.get_message(timeout=2)
    assert message is not None, "no call pop was published"
    data: bytes = message["data"]
    return data


def test_a_cached_call_pop_takes_one_round_trip_and_publishes_the_same_bytes(
    counting: CountingRedis,
    client: redis.Redis,
    config_path: Path,
    celery_app: ContactLookupCelery,
) -> None:
    fast = pipeline(counting, counting, config_path, celery_app)
    # The same Redis through another client object: the fast path is off, 3 round trips.
    other = redis.Redis(connection_pool=client.connection_pool)
    slow = pipeline(client, other, config_path, celery_app)
    assert fast._fast is not None and slow._fast is None

    request = LookupRequest("+14155550100")
    assert fast.service.lookup("demo", request)["successful"]  # caches the match
    pubsub = client.pubsub(ignore_subscribe_messages=True)
    pubsub.subscribe(CHANNEL)
    pubsub.get_message(timeout=1)

    fast.handle(ringing("warm-1", "s-warm"))  # the first run loads the script (SCRIPT LOAD)
    published(pubsub)
    before = counting.sent
    [outcome] = fast.handle(ringing("fast-1", "s-fast"))
    assert counting.sent - before == 1  # checks, cache read and PUBLISH in one script
    assert outcome.action == "answered-from-cache"
    fast_bytes = published(pubsub)

    [slow_outcome] = slow.handle(ringing("slow-1", "s-fast"))
    # The same session: its once-key is taken, so the slow path would skip it. Use a new
    # session for the comparison, and compare with the session id swapped back.
    assert slow_outcome.action == "skipped"
    [slow_outcome] = slow.handle(ringing("slow-2", "s-slow"))
    assert slow_outcome.action == "answered-from-cache"
    slow_bytes = published(pubsub)
    assert fast_bytes == slow_bytes.replace(b'"s-slow"', b'"s-fast"')
    assert outcome.result == slow_outcome.result
    assert not queued(client, "call_pop")
    pubsub.close()


def test_rules_hold_on_the_fast_path_duplicates_once_per_party_and_misses(
    counting: CountingRedis,
    client: redis.Redis,
    config_path: Path,
    celery_app: ContactLookupCelery,
) -> None:
    fast = pipeline(counting, counting, config_path, celery_app)
    fast.handle(ringing("warm-1", "s-warm"))  # the first run loads the script (SCRIPT LOAD)
    # A miss: nothing cached, so the job is enqueued, with no second cache read.
    before = counting.sent
    [miss] = fast.handle(ringing("miss-1", "s-miss"))
    assert miss.action == "enqueued" and len(queued(client, "call_pop")) == 2
    assert counting.sent - before == 1  # the script; the enqueue goes to the broker

    assert fast.service.lookup("demo", LookupRequest("+14155550100"))["successful"]
    pubsub = client.pubsub(ignore_subscribe_messages=True)
    pubsub.subscribe(CHANNEL)
    pubsub.get_message(timeout=1)
    assert [o.action for o in fast.handle(ringing("hit-1", "s-hit"))] == ["answered-from-cache"]
    assert [o.action for o in fast.handle(ringing("hit-1", "s-hit"))] == ["duplicate"]
    assert [o.action for o in fast.handle(ringing("hit-2", "s-hit"))] == ["skipped"]
    published(pubsub)
    assert pubsub.get_message(timeout=0.2) is None  # exactly one pop for the party
    pubsub.close()


def test_an_unreadable_cache_entry_is_not_published(
    counting: CountingRedis,
    client: redis.Redis,
    config_path: Path,
    celery_app: ContactLookupCelery,
) -> None:
    fast = pipeline(counting, counting, config_path, celery_app)
    key = fast.service.prepare("demo", LookupRequest("+14155550100")).cache_key
    for bad in (b"[]", b"{}", b"[not json", b"garbage"):
        client.set(key, bad)
        [outcome] = fast.handle(ringing(f"bad-{bad!r}", f"s-{bad!r}"))
        assert outcome.action == "enqueued", bad
