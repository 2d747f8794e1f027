"""Request coalescing: concurrent lookups of one number make one set of CRM requests.

Lookups that would send the same CRM requests (the same ``Prepared.cache_key``: account,
connection, CRM instance, number and formats) while one of them is already in flight, on any
worker on any machine, wait for that one's answer instead of asking the CRM again.

Protocol, all in Redis (keys from contact_lookup/core/keys.py, every one with a TTL):

1. **Elect.** A Lua script sets ``coalesce(name)`` to a fresh token (``SET NX PX``) or returns
   the token already there. Whoever set it is the *leader*; the others are its *followers*,
   bound to that token (so a follower can never read the slot of an earlier leader). When
   the connection is rate limited the guard runs the election inside the limiter's script
   (``RateLimiter.take`` with ``lead``, core/guard.py): one round trip, the lock taken only
   with the leader's tokens.
2. **Lead.** The leader runs the lookup (through the rate limiter: followers take no tokens),
   then, in one script, stores ``{"ok": true, "result": ...}`` in ``coalesce_result`` for
   ``result_ttl_s``, pushes a wake-up onto ``coalesce_wake`` and deletes the lock if it is
   still its own; the same script writes the lookup's cache entry when the cache is on this
   Redis (``Pending``, core/cache.py). On any exception it stores ``{"ok": false}`` instead
   and re-raises.
3. **Follow.** A follower blocks on the wake-up list with ``BLMOVE wake wake`` (a rotation:
   the element stays, so every follower wakes, and one that arrives after the wake-up returns
   at once), in slices of at most a second, for at most ``wait_s`` in all, then reads the slot.
   A success is returned as the follower's own result, marked ``isCoalesced``.

Failures are never shared as success: when the leader failed, left nothing (it died and its
lock expired) or is still running after ``wait_s``, the follower runs the lookup itself,
rate limited like any other. A follower of a rate-limited leader is then deferred by the
limiter without a CRM request; after an outage or an auth failure each follower gets its own
honest error. The cost of that fallback is a duplicate request only when the CRM is already
failing or slower than ``wait_s``.

Forced refreshes (``isForceRefreshAccountData``) coalesce only with each other (a separate
name): joining a plain lookup that started earlier could return an answer older than the
refresh asked for, and a forced lookup has its own cache effect (it deletes a stale entry).
Debug lookups are not coalesced at all (see guard.py): their trace must show their own
requests. Results are only shared among lookups in flight together; finished lookups are
served by the contact cache (and an empty match, never cached, is asked for again).

Requires Redis >= 6.2 (``BLMOVE``).
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
import uuid
from collections.abc import Callable
from typing import Any

import redis

from contact_lookup.core import keys
from contact_lookup.core.cache import Pending

log = logging.getLogger(__name__)

# KEYS: lock. ARGV: token, ttl_ms. Returns the current leader's token, or nil when we lead.
_ELECT = """
local current = redis.call('GET', KEYS[1])
if current then return current end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return false
"""

# KEYS: lock, result, wake, and the cache key when the leader's answer is to be cached.
# ARGV: token, payload, ttl_ms, then the cached value and its TTL in seconds.
_FINISH = """
if KEYS[4] then redis.call('SET', KEYS[4], ARGV[4], 'EX', ARGV[5]) end
redis.call('SET', KEYS[2], ARGV[2], 'PX', ARGV[3])
redis.call('RPUSH', KEYS[3], '1')
redis.call('PEXPIRE', KEYS[3], ARGV[3])
if redis.call('GET', KEYS[1]) == ARGV[1] then redis.call('DEL', KEYS[1]) end
return 1
"""

Work = Callable[[], dict[str, Any]]
Elect = Callable[[str, str, int], str | None]


class Coalescer:
    """Runs ``work`` once for all concurrent callers of the same ``name``.

    ``wait_s``: the longest a follower waits for its leader; it blocks in slices of
    ``slice_s``, each shorter than the Redis client's socket timeout. ``lock_ttl_s``: how long
    the lock of a leader that died outlives it; longer than any lookup takes.
    ``result_ttl_s``: how long a leader's answer waits for its followers to read it.
    """

    def __init__(
        self,
        client: redis.Redis,
        *,
        wait_s: float = 5.0,
        lock_ttl_s: float = 30.0,
        result_ttl_s: float = 15.0,
        slice_s: float = 1.0,
    ) -> None:
        self.redis = client
        self.wait_s = wait_s
        self.lock_ttl_ms = int(lock_ttl_s * 1000)
        self.result_ttl_ms = int(result_ttl_s * 1000)
        self.slice_s = slice_s
        self._elect = client.register_script(_ELECT)
        self._finish = client.register_script(_FINISH)

    @staticmethod
    def name(cache_key: str, *, forced: bool) -> str:
        """The coalescing name of a lookup: its cache key, hashed, in its own mode."""
        digest = hashlib.sha1(cache_key.encode(), usedforsecurity=False).hexdigest()
        return f"{'fresh' if forced else 'any'}:{digest}"

    def run(
        self,
        name: str,
        work: Work,
        *,
        elect: Elect | None = None,
        lead: Work | None = None,
        pending: Pending | None = None,
    ) -> dict[str, Any]:
        """``work()``'s result, or a concurrent leader's.

        ``elect(lock, token, ttl_ms)``: the election when a caller folds more into it (the
        guard takes the rate limiter's tokens in the same script): the holder's token, or
        None when ``token`` now holds the lock; it may raise (nothing was taken). ``lead``:
        what the leader runs (default ``work``; a follower left without an answer runs
        ``work``). ``pending``: the leader's cache write (core/cache.py), made by the hand-off
        script when it is on this Redis.
        """
        token = uuid.uuid4().hex
        lock = keys.coalesce(name)
        if elect is not None:
            leader = elect(lock, token, self.lock_ttl_ms)
        else:
            leader = _text(self._elect(keys=[lock], args=[token, self.lock_ttl_ms]))
        if leader is None:
            return self._lead(name, token, lead or work, pending)
        shared = self._follow(name, leader)
        if shared is not None:
            tracking = {**shared.get("extraDataTracking", {}), "isCoalesced": True}
            return {**shared, "extraDataTracking": tracking}
        return work()

    def _lead(
        self, name: str, token: str, work: Work, pending: Pending | None = None
    ) -> dict[str, Any]:
        try:
            result = work()
        except BaseException:
            self._publish(name, token, {"ok": False})
            raise
        self._publish(name, token, {"ok": True, "result": result}, pending)
        return result

    def _publish(
        self, name: str, token: str, payload: dict[str, Any], pending: Pending | None = None
    ) -> None:
        names = [
            keys.coalesce(name),
            keys.coalesce_result(name, token),
            keys.coalesce_wake(name, token),
        ]
        args: list[Any] = [token, json.dumps(payload, separators=(",", ":")), self.result_ttl_ms]
        write = pending is not None and pending.key is not None and pending.client is self.redis
        if write:
            assert pending is not None and pending.key is not None
            names.append(pending.key)
            args += [pending.value, pending.ttl_s]
        try:
            self._finish(keys=names, args=args)
            if write:
                assert pending is not None
                pending.done = True
        except (redis.RedisError, TypeError, ValueError):
            # The lookup itself is done; followers time out and look up for themselves.
            log.warning("coalesce %s: could not publish the result", name, exc_info=True)

    def _follow(self, name: str, token: str) -> dict[str, Any] | None:
        """The leader's successful result, or None when the follower must look up itself."""
        wake = keys.coalesce_wake(name, token)
        deadline = time.monotonic() + self.wait_s
        while (left := deadline - time.monotonic()) > 0:
            # Redis takes a fractional timeout; redis-py's stubs say int.
            timeout: Any = max(0.01, min(left, self.slice_s))
            if self.redis.blmove(wake, wake, timeout, "RIGHT", "LEFT") is not None:
                break
            if _text(self.redis.get(keys.coalesce(name))) != token:
                break  # the leader's lock lapsed: it died, or finished and its wake-up expired
        raw = self.redis.get(keys.coalesce_result(name, token))
        try:
            payload = json.loads(raw) if raw is not None else None
        except ValueError:
            payload = None
        if (
            isinstance(payload, dict)
            and payload.get("ok") is True
            and isinstance(payload.get("result"), dict)
        ):
            result: dict[str, Any] = payload["result"]
            return result
        log.info(
            "coalesce %s: leader %s left no result (%s); looking up",
            name,
            token,
            "failed" if payload else "none",
        )
        return None


def _text(value: Any) -> str | None:
    """A reply as text, whether the client decodes responses or not."""
    return value.decode() if isinstance(value, bytes) else value
