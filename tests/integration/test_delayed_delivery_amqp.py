"""A countdown sent by a producer on a RabbitMQ no worker has used yet.

Celery's native delayed delivery (how quorum queues carry a countdown: the settle window of a
call log, tasks/celery_app.py) publishes to the ``celery_delayed_*`` exchanges, which only a
worker's start-up declares. The webhook sent its first call log with a countdown before any
worker had run in the vhost: RabbitMQ closed the channel (``NOT_FOUND - no exchange
'celery_delayed_27'``) and the webhook answered 500 (found by the fuzz suite under
``make test-amqp``). ``tasks.enqueue.ensure_delayed_delivery`` declares and binds them from
the producer. This test uses a vhost of its own, so no worker of another test has declared
anything in it; without RabbitMQ it skips (fails under CI, like the other RabbitMQ tests).
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from kombu import Connection

from contact_lookup.core.request import LookupRequest
from tasks.celery_app import create_app
from tasks.enqueue import enqueue
from tests.conftest import EXAMPLES, settings_for
from tests.fakecrm import wait_for
from tests.rabbitvhost import private_vhost


@pytest.fixture
def fresh_vhost() -> Iterator[str]:
    with private_vhost("contact-lookup-delayed") as url:
        yield url


def test_a_producers_countdown_reaches_its_queue_on_a_vhost_no_worker_used(
    fresh_vhost: str, redis_url: str, tmp_path: Path
) -> None:
    shutil.copy(EXAMPLES / "contacts.json", tmp_path / "contacts.json")
    shutil.copy(EXAMPLES / "contact-lookup.toml", tmp_path / "cl.toml")
    app = create_app(settings_for(redis_url, tmp_path / "cl.toml", broker_url=fresh_vhost))
    try:
        sent = enqueue(app, "demo", LookupRequest("+14155550100", "call_log"), countdown_s=1)
        assert sent.id
        # Delayed, then delivered to call_log (not dropped: the queue is bound to the
        # delivery exchange).
        with Connection(fresh_vhost, connect_timeout=5) as conn:
            channel = conn.channel()

            def queued() -> int:
                return int(channel.queue_declare("call_log", passive=True).message_count)

            wait_for(queued, 20)
            assert queued() == 1
    finally:
        app.close()
