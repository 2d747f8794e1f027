"""tasks/kombu_redis.py: a kombu Redis channel closed after its transport dropped its client
(what a Sentinel failover left behind) fails with a connection error, which kombu's own
``ignore_errors`` swallows so Celery reconnects, not with the AttributeError that stopped the
worker. Real Redis (the suite's), real kombu channel."""

from __future__ import annotations

import pytest
import redis
from kombu import Connection, Exchange, Producer, Queue
from kombu.common import ignore_errors

from tasks.kombu_redis import guard_closed_transport


def test_closing_a_channel_of_a_closed_transport_is_a_connection_error(redis_url: str) -> None:
    guard_closed_transport()
    guard_closed_transport()  # idempotent: one wrapper, not two
    with Connection(redis_url) as conn:
        channel = conn.channel()
        # A delivered, unacknowledged message: closing the channel restores it, which needs
        # a Redis client (the step that failed).
        queue = Queue("guard-test", Exchange("guard-test"), "guard-test", channel=channel)
        queue.declare()
        Producer(channel).publish({"n": 1}, exchange=queue.exchange, routing_key="guard-test")
        assert queue.get(no_ack=False) is not None
        assert (
            channel._connparams()["port"]
            == redis.Redis.from_url(redis_url).connection_pool.connection_kwargs["port"]
        )
        channel._disconnect_pools()  # the failover: the pools are gone...
        channel.connection.client = None  # ...and the transport's client with them
        with pytest.raises(redis.exceptions.ConnectionError):
            channel._connparams()
        ignore_errors(conn, channel.close)  # raised AttributeError before the guard
        assert channel.closed
