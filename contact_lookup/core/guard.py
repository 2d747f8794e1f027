"""The guard around the CRM part of a lookup: coalescing outside, the rate limiter inside.

    LookupService.lookup: cache miss -> Guard.run(prepared, request, connector, work)
        coalesce  the same lookup already in flight? wait for its answer (no tokens, no requests)
        limit     the leader takes one token per CRM request, or is deferred (RateLimited)
        run       the connector's requests; what the CRM says of its limit holds everyone off

The order matters: followers of a coalesced lookup take no tokens, so N concurrent lookups of
one number cost the budget what one does. A deferred leader publishes a failure; its
followers then try for themselves and are deferred by the limiter too, without a request.

Tokens per lookup: ``connector.request_count(connector.plan(terms))`` (by default the planned
queries times the connector's ``requests_per_query``, 1 unless it says otherwise; a connector
that ORs several queries into one request counts its own) are taken at once before the first
request, so a lookup that cannot run is deferred before it starts. Every CRM request is paid
before it is sent: the connector's ``budget`` (a ``SharedBudget``) spends those tokens first,
then takes one more from the shared limiter for each request past them (further pages,
per-entity searches, enrichment reads such as Pipedrive's person reads), and raises
``RateLimited`` - the request unsent - when the budget cannot cover it. What each response
says of the vendor's own limit goes to ``RateLimiter.follow``. Fan-out (connectors/fanout.py)
sends a lookup's searches from several threads: each request is paid by ``SharedBudget.take``
(under its lock) on the thread that sends it, before it is sent.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

from contact_lookup import metrics
from contact_lookup.connectors.base import Connector
from contact_lookup.core.cache import Pending
from contact_lookup.core.coalesce import Coalescer
from contact_lookup.core.ratelimit import Limit, RateLimiter, Taken, limit_for
from contact_lookup.core.request import LookupRequest, Prepared
from contact_lookup.model.config import Connection
from contact_lookup.model.errors import RateLimited, RateLimitState
from contact_lookup.model.purpose import Purpose

# A 429 that names no wait (Bullhorn documents "wait 1 second then retry").
DEFAULT_HOLD_OFF_S = 1.0

Work = Callable[[], dict[str, Any]]


class Guard:
    """The CRM part of a lookup, coalesced and rate limited. Either part may be None (off)."""

    def __init__(self, limiter: RateLimiter | None, coalescer: Coalescer | None) -> None:
        self.limiter = limiter
        self.coalescer = coalescer

    def run(
        self,
        prepared: Prepared,
        request: LookupRequest,
        connector: Connector,
        work: Work,
        pending: Pending | None = None,
    ) -> dict[str, Any]:
        """``work()``'s result, or a coalesced leader's; ``RateLimited`` when deferred.
        ``pending``: the cache write ``work`` leaves, folded into the leader's hand-off."""

        def limited() -> dict[str, Any]:
            return self._limited(prepared, request, connector, work)

        # A debug lookup is not coalesced: its trace must show the requests it made itself.
        if self.coalescer is None or request.debug:
            return limited()
        name = Coalescer.name(prepared.cache_key, forced=request.force_refresh)
        conn = prepared.connection
        limit = limit_for(conn, connector.default_rate_limit) if self.limiter else None
        if self.limiter is None or limit is None:
            return self.coalescer.run(name, limited, pending=pending)
        # The election and the leader's tokens in one script (RateLimiter.take with lead):
        # a follower takes none; a deferred lookup takes neither tokens nor the lock.
        tokens = self.tokens(prepared, connector)
        priority = Purpose(request.purpose).has_priority
        limiter = self.limiter
        paid: list[Taken] = []

        def elect(lock: str, token: str, ttl_ms: int) -> str | None:
            taken = self._take(conn, limit, tokens, priority, request, (lock, token, ttl_ms))
            if taken.leader is not None:
                return taken.leader
            paid.append(taken)
            return None

        def lead() -> dict[str, Any]:
            budget = SharedBudget(
                limiter, conn, limit, priority, prepaid=tokens, followed=paid[0].followed
            )
            return self._paid(conn, connector, budget, work)

        return self.coalescer.run(name, limited, elect=elect, lead=lead, pending=pending)

    def _take(
        self,
        conn: Connection,
        limit: Limit,
        tokens: int,
        priority: bool,
        request: LookupRequest,
        lead: tuple[str, str, int] | None = None,
    ) -> Taken:
        assert self.limiter is not None
        try:
            taken = self.limiter.take(conn, limit, tokens, priority=priority, lead=lead)
        except RateLimited:
            metrics.count_deferral(conn.name, request.purpose)
            raise
        if taken.leader is None:
            metrics.set_budget_remaining(conn.name, limit.requests - taken.used - tokens)
        return taken

    @staticmethod
    def tokens(prepared: Prepared, connector: Connector) -> int:
        """How many CRM requests the lookup will make (see the module docstring)."""
        return connector.request_count(connector.plan(list(prepared.terms)))

    def _limited(
        self, prepared: Prepared, request: LookupRequest, connector: Connector, work: Work
    ) -> dict[str, Any]:
        conn = prepared.connection
        limit = limit_for(conn, connector.default_rate_limit) if self.limiter else None
        if self.limiter is None or limit is None:
            return work()
        tokens = self.tokens(prepared, connector)
        priority = Purpose(request.purpose).has_priority
        taken = self._take(conn, limit, tokens, priority, request)
        budget = SharedBudget(
            self.limiter, conn, limit, priority, prepaid=tokens, followed=taken.followed
        )
        return self._paid(conn, connector, budget, work)

    def _paid(
        self, conn: Connection, connector: Connector, budget: SharedBudget, work: Work
    ) -> dict[str, Any]:
        """``work()`` with its planned tokens already taken (``budget``)."""
        assert self.limiter is not None
        connector.budget = budget
        try:
            result = work()
        except RateLimited as exc:
            # The CRM's "rate limited" holds everyone off; our own budget's deferral of a
            # request past the prepaid ones (no status: nothing was sent) does not.
            if exc.status_code is not None or exc.rate_limit is not None:
                self.limiter.hold_off(conn, crm_wait_s(exc))
            raise
        wait = reported_wait_s(result)
        if wait:
            self.limiter.hold_off(conn, wait)
        return result


class SharedBudget:
    """One lookup's budget on the shared limiter: ``prepaid`` tokens, then one per request.

    ``take(n)`` spends prepaid tokens first and takes the rest from the limiter, raising
    ``RateLimited`` (nothing sent) when it cannot; ``observe`` passes the vendor's figures to
    ``RateLimiter.follow``. Thread-safe, so a lookup may send requests from several threads.
    ``paid`` counts every request paid for (prepaid ones as they are spent), ``extra`` those
    taken past the prepaid ones. ``followed``: the limiter follows the vendor's figures for
    this connection (``Taken.followed``); while it does not, a response without figures has
    nothing to stop following, and ``observe`` makes no Redis call for it.
    """

    def __init__(
        self,
        limiter: RateLimiter,
        connection: Connection,
        limit: Limit,
        priority: bool,
        *,
        prepaid: int = 0,
        followed: bool = True,
    ) -> None:
        self.limiter = limiter
        self.followed = followed
        self.connection = connection
        self.limit = limit
        self.priority = priority
        self.prepaid = prepaid
        self.paid = 0
        self.extra = 0
        self._lock = threading.Lock()

    def take(self, requests: int = 1) -> None:
        with self._lock:
            from_prepaid = min(self.prepaid, requests)
            self.prepaid -= from_prepaid
            more = requests - from_prepaid
            if more:
                try:
                    taken = self.limiter.take(
                        self.connection, self.limit, more, priority=self.priority
                    )
                    self.followed = self.followed or taken.followed
                except RateLimited:
                    self.prepaid += from_prepaid  # nothing was sent
                    raise
                self.extra += more
            self.paid += requests

    def observe(self, state: RateLimitState | None) -> None:
        if state is None and not self.followed:
            return  # nothing followed: ``follow(None)`` would delete a key that is not there
        if state is not None:
            self.followed = True
        self.limiter.follow(self.connection, state)


def crm_wait_s(exc: RateLimited, now: float | None = None) -> float:
    """How long the CRM asked everyone to wait when it answered "rate limited"."""
    if exc.retry_after_s is not None:
        return exc.retry_after_s
    if exc.rate_limit is not None and exc.rate_limit.reset is not None:
        return exc.rate_limit.reset - (time.time() if now is None else now)
    return DEFAULT_HOLD_OFF_S


def reported_wait_s(result: dict[str, Any], now: float | None = None) -> float:
    """Seconds until the CRM's reset when a successful response said no request remains."""
    tracking = result.get("extraDataTracking") or {}
    reset = tracking.get("ratelimitReset")
    if tracking.get("ratelimitRemaining") != 0 or not isinstance(reset, int | float):
        return 0.0
    return max(0.0, reset - (time.time() if now is None else now))
