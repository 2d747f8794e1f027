"""A worker that loses its Redis broker keeps running: one guard on kombu's Redis transport.

When the broker's connection drops (a Sentinel failover: the old master refuses), Celery's
consumer closes the connection and reconnects (``on_connection_error_after_connected``). kombu
closes the channel after the transport has already dropped its client
(``Transport.client = None``); the channel's close then restores its unacked messages, which
needs a new Redis client, whose parameters kombu reads from ``self.connection.client``:
``AttributeError: 'NoneType' object has no attribute 'hostname'`` in
``kombu.transport.redis.Channel._connparams``. That is not a connection error, so
``ignore_errors`` lets it through and the worker stops with "Unrecoverable error" instead of
reconnecting. The same error on close is reported upstream (celery/kombu#582 "Error on
restarting Gossip", celery/kombu#970 "Error on Restarting Celery"); seen here in
``tests/scaleout/test_sentinel_example.py`` about one failover in three (kombu 5.7.0).

The guard makes that state a ``redis.exceptions.ConnectionError`` (one of the transport's
``connection_errors``), so kombu ignores it during close and Celery reconnects, to the new
master under Sentinel. Nothing is lost by skipping the restore: the messages stay in kombu's
unacked hash and come back after the visibility timeout (``restore_visible``), as for any
worker that dies holding them (docs/contracts.md, "Celery on Redis").
"""

from __future__ import annotations

import functools
from typing import Any

import redis
from kombu.transport import redis as kombu_redis

_GUARDED = "_contact_lookup_guarded"


def guard_closed_transport() -> None:
    """Install the guard on ``kombu.transport.redis.Channel._connparams`` (idempotent)."""
    channel = kombu_redis.Channel
    original = channel._connparams
    if getattr(original, _GUARDED, False):
        return

    @functools.wraps(original)
    def _connparams(self: Any, asynchronous: bool = False) -> Any:
        transport = self.connection
        if transport is None or transport.client is None:
            raise redis.exceptions.ConnectionError(
                "the broker connection was closed (kombu dropped the transport's client)"
            )
        return original(self, asynchronous=asynchronous)

    setattr(_connparams, _GUARDED, True)
    channel._connparams = _connparams  # type: ignore[method-assign]
