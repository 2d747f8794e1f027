"""Redis Sentinel: the master killed during a stream of webhook events and lookups.

A real master, a replica and three sentinels on 127.0.0.1 (``redis-server --sentinel``),
every Redis role on ``sentinel://`` URLs (broker db 0, results 1, state 2, cache 3), a real
worker process and the webhook app. The master is SIGKILLed while events stream in; the
sentinels promote the replica, and nothing is restarted or reconfigured: the worker (kombu's
Sentinel transport) and the webhook (redis-py's ``Sentinel.master_for``, kombu for the
sends) find the new master by asking the sentinels. Events that arrive during the gap get 503
and are redelivered, as RingCentral does, until accepted; every accepted event's job should
end with a successful result on the promoted master.

Redis replication is asynchronous (https://redis.io/docs/latest/operate/oss_and_stack/management/replication/):
a write acknowledged in the last moment before the master died may not have reached the
replica. RabbitMQ's quorum queues with publisher confirms do not have that window. The test
measures what that window cost (``lost``; the figure also counts the jobs the worker logged
as received) and fails above ``MAX_LOST_TO_REPLICATION``.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from contact_lookup.settings import Settings
from producers.pipeline import build_pipeline
from producers.webhook import create_webhook_app
from tests.fakecrm import wait_for
from tests.faults.faultkit import META_PREFIX, WorkerProcess, base_env, figure, received_ids
from tests.producers.conftest import variant, write_config
from tests.scaleout.sentinelkit import SentinelSet, post_until_accepted

EVENTS = 60
KILL_AFTER = 20
# Redis replicates asynchronously: a job pushed, popped or acknowledged in the last moment
# before the master died can miss the replica (kombu's BRPOP-then-HSET makes the worker side
# of that window wider). Seen: 0 or 1 of 60 per run. More is a regression, and fails.
MAX_LOST_TO_REPLICATION = 1
# A job the worker held when the master died is recorded as unacknowledged on the promoted
# replica (replicated) and comes back after this; short, so the test need not wait 600 s.
VISIBILITY_TIMEOUT_S = 5


@pytest.fixture
def sentinels(tmp_path: Path) -> Iterator[SentinelSet]:
    group = SentinelSet(tmp_path).start()
    try:
        yield group
    finally:
        group.stop()


def test_workers_and_webhook_follow_a_sentinel_failover(
    sentinels: SentinelSet, tmp_path: Path
) -> None:
    toml = write_config(tmp_path, 'default = "demo"\n')
    urls = {role: sentinels.url(db) for db, role in enumerate(("broker", "results", "state"))}
    urls["cache"] = sentinels.url(3)
    settings = Settings(
        redis_url=urls["state"],
        broker_url=urls["broker"],
        result_backend=urls["results"],
        state_url=urls["state"],
        cache_url=urls["cache"],
        config_path=str(toml),
        visibility_timeout_s=VISIBILITY_TIMEOUT_S,
    )
    env = base_env(
        REDIS_URL=urls["state"],
        BROKER_URL=urls["broker"],
        RESULT_BACKEND=urls["results"],
        STATE_URL=urls["state"],
        CACHE_URL=urls["cache"],
        CONTACT_LOOKUP_CONFIG=str(toml),
        VISIBILITY_TIMEOUT=str(VISIBILITY_TIMEOUT_S),
        # start-up refuses a visibility timeout not above the longest countdown and a
        # call-pop deadline not below it: both made shorter with it
        RETRY_MAX_DELAY=str(VISIBILITY_TIMEOUT_S - 1),
        CALL_POP_DEADLINE=str(VISIBILITY_TIMEOUT_S - 1),
    )
    old_master = sentinels.master.port
    producer = build_pipeline(settings)
    web = create_webhook_app(producer, settings).test_client()
    worker = WorkerProcess(env, tmp_path, "sentinel", queues="message_log", concurrency=4)
    events = [
        variant("sms_inbound", uuid=f"sentinel-{i:03d}", body__id=str(900000 + i))
        for i in range(EVENTS)
    ]
    refused = 0
    failover_s = 0.0
    try:
        worker.start(60)
        for i, event in enumerate(events):
            if i == KILL_AFTER:
                sentinels.master.proc.kill()  # type: ignore[union-attr]  # SIGKILL
                killed_at = time.monotonic()
            refused += post_until_accepted(web, event)
            if i >= KILL_AFTER and not failover_s and sentinels.master_port() != old_master:
                failover_s = time.monotonic() - killed_at
        assert sentinels.master_port() == sentinels.replica.port  # the replica was promoted
        results = redis.Redis(port=sentinels.replica.port, db=1)
        done: dict[str, Any] = {}

        def all_done() -> bool:
            done.clear()
            for key in results.scan_iter(META_PREFIX + "*", count=500):
                raw = results.get(key)
                if raw and b'"SUCCESS"' in raw:
                    done[key.decode()] = raw
            return len(done) >= EVENTS

        wait_for(all_done, VISIBILITY_TIMEOUT_S + 60)
        logs = worker.logs()
        broker_db = redis.Redis(port=sentinels.replica.port, db=0)
        queued, unacked = broker_db.llen("message_log"), broker_db.hlen("unacked")
    finally:
        worker.stop()
        producer.app.close()
    received = received_ids(logs.splitlines())
    lost = EVENTS - len(done)
    figure(
        "sentinel_failover",
        events=EVENTS,
        accepted=EVENTS,
        refused_503=refused,
        results=len(done),
        lost=lost,
        received_by_worker=len(received),
        still_queued=queued,
        unacked=unacked,
        failover_s=round(failover_s, 1),
    )
    assert lost <= MAX_LOST_TO_REPLICATION, f"{lost} of {EVENTS} lost:\n{logs[-4000:]}"
    assert refused > 0  # the gap was real, and the 503/redelivery path covered it
