"""The guard around the CRM part of a lookup: coalescing outside, the rate limiter inside.

    LookupService.lookup: cache miss -> Guard.run(prepared, request, connector, work)
        coalesce  the same lookup already in flight? wait for its answer (no tokens, no requests)
        limit     the leader takes one token per CRM request, or is deferred (RateLimited)
        run       the connector's requests; what the CRM says of its limit holds everyone off

The order matters: followers of a coalesced lookup take no tokens, so N concurrent lookups of
one number cost the budget what one does. A deferred leader publishes a failure; its
followers then try for themselves and are deferred by the limiter too, without a request.

Tokens per lookup: ``connector.request_count(connector.plan(terms))``: by default the planned
queries times the connector's ``requests_per_query`` (default 1) for connectors that send
several requests per phone query (one per record type, say); a connector that ORs several
queries into one request counts its own. Extra pages of a large result are not counted: a
rare slight under-count that the CRM's own signals (429, remaining 0) then correct.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from contact_lookup.connectors.base import Connector
from contact_lookup.core.coalesce import Coalescer
from contact_lookup.core.ratelimit import RateLimiter, limit_for
from contact_lookup.core.request import LookupRequest, Prepared
from contact_lookup.model.errors import RateLimited
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
        self, prepared: Prepared, request: LookupRequest, connector: Connector, work: Work
    ) -> dict[str, Any]:
        """``work()``'s result, or a coalesced leader's; ``RateLimited`` when deferred."""

        def limited() -> dict[str, Any]:
            return self._limited(prepared, request, connector, work)

        # A debug lookup is not coalesced: its trace must show the requests it made itself.
        if self.coalescer is None or request.debug:
            return limited()
        name = Coalescer.name(prepared.cache_key, forced=request.force_refresh)
        return self.coalescer.run(name, limited)

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
        self.limiter.acquire(conn, limit, tokens, priority=priority)
        try:
            result = work()
        except RateLimited as exc:
            self.limiter.hold_off(conn, crm_wait_s(exc))
            raise
        wait = reported_wait_s(result)
        if wait:
            self.limiter.hold_off(conn, wait)
        return result


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
