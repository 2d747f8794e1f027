"""The contract's simulator control protocol: what the connector contract needs of a simulator
it knows only by URL (``Harness.from_url`` in ``contact_lookup.testing.contract``).

Every ``crmsim`` simulator speaks it (``Simulator._dispatch`` answers these paths before
authentication, counting, faults and rate limits); a plugin author's own simulator, in any
language, implements the same few endpoints to get every contract case run against it.
Bodies are JSON; every answer is ``204 No Content`` unless said otherwise, ``400`` with
``{"error": ...}`` for a body that does not fit. A simulator that does not implement an
endpoint answers ``404``: the contract cases that need it are then skipped, naming it.

``POST /_contract/seed``
    ``{"contacts": [...], "token": "..."}`` (or the contact list alone): the simulator serves
    exactly these spec-shaped contacts (``contact_lookup/testing/contacts.json``, in its
    vendor's shape) and, when ``token`` is given, accepts that credential and no other.
``POST /_contract/fault``
    ``{"fault": F, "count": N, "hold_s": S}``: answer the next ``N`` (default 1) API requests
    with ``F``: ``"500"``, ``"502"``, ``"503"`` (an HTML error page), ``"429"`` (the vendor's
    rate-limit answer, with ``Retry-After: retry_after`` when ``"retry_after"`` is given),
    ``"timeout"`` (hold the request ``hold_s`` seconds, then hang up), ``"malformed"`` (a 200
    that is not JSON), ``"truncated"`` (half a body, then the connection cut), ``"empty"``.
``POST /_contract/rate_limit``
    ``{"limit": L, "window_s": W}``: a fixed window of ``L`` requests per ``W`` seconds, with
    the vendor's rate-limit headers on every answer and its rate-limit answer over it;
    ``null`` removes it.
``POST /_contract/reset``
    Counters to zero and pending faults dropped (seed and rate limit stay).
``GET /_contract/state``
    ``200 {"requests": int, "rate_limited": int, "rate_limit_headers": [names]}``: API
    requests received and answered as rate limited since the last reset, and the names of the
    rate-limit headers the vendor sends while a limit is set (empty: it documents none).

The simulators listen on 127.0.0.1 only; the protocol has no authentication of its own.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from crmsim.base import FAULTS, SimRequest, SimResponse, WindowState

if TYPE_CHECKING:
    from crmsim.base import Simulator

PREFIX = "/_contract/"
SEED, FAULT, RATE_LIMIT, RESET, STATE = (
    PREFIX + name for name in ("seed", "fault", "rate_limit", "reset", "state")
)


def _bad(message: str) -> SimResponse:
    return SimResponse(400, {"error": message})


def handle(sim: Simulator, req: SimRequest) -> SimResponse | None:
    """The answer to a control request; None for any other path (the vendor's API)."""
    if not req.path.startswith(PREFIX):
        return None
    body = req.json()
    route = (req.method, req.path)
    if route == ("POST", SEED):
        return _seed(sim, body)
    if route == ("POST", FAULT):
        return _fault(sim, body)
    if route == ("POST", RATE_LIMIT):
        if body is None:
            sim.set_rate_limit(None)
            return SimResponse(204)
        limit, window = (body or {}).get("limit"), (body or {}).get("window_s")
        if not isinstance(limit, int) or limit < 1 or not isinstance(window, int | float):
            return _bad("expected {limit: int >= 1, window_s: seconds} or null")
        sim.set_rate_limit((limit, float(window)))
        return SimResponse(204)
    if route == ("POST", RESET):
        sim.reset_counters()
        with sim.lock:
            sim.faults.clear()
        return SimResponse(204)
    if route == ("GET", STATE):
        probe = WindowState(1, 0, 1.0, time.time() + 1, True)
        return SimResponse(
            200,
            {
                "requests": sim.requests,
                "rate_limited": sim.rate_limited,
                "rate_limit_headers": sorted(sim.rate_limit_headers(probe)),
            },
        )
    return SimResponse(404, {"error": f"no control endpoint {req.method} {req.path}"})


def _seed(sim: Simulator, body: Any) -> SimResponse:
    if isinstance(body, list):
        body = {"contacts": body}
    contacts = body.get("contacts") if isinstance(body, dict) else None
    token = body.get("token") if isinstance(body, dict) else None
    if not isinstance(contacts, list) or not all(isinstance(c, dict) for c in contacts):
        return _bad("expected {contacts: [contact, ...], token?: str} or a contact list")
    if token is not None and (not isinstance(token, str) or not token):
        return _bad("token must be a non-empty string")
    sim.reseed(contacts, token=token)
    return SimResponse(204)


def _fault(sim: Simulator, body: Any) -> SimResponse:
    if not isinstance(body, dict):
        return _bad("expected {fault: str, count?: int, hold_s?: seconds, retry_after?: s}")
    fault, count = str(body.get("fault")), body.get("count", 1)
    if not isinstance(count, int) or count < 1:
        return _bad("count must be a whole number >= 1")
    hold = body.get("hold_s")
    if hold is not None:
        if not isinstance(hold, int | float) or hold < 0:
            return _bad("hold_s must be seconds")
        sim.hang_s = float(hold)
    if fault == "429":
        retry_after = body.get("retry_after")
        if retry_after is not None and not isinstance(retry_after, int | float):
            return _bad("retry_after must be seconds")
        sim.force_rate_limited(count, retry_after)
        return SimResponse(204)
    if fault not in FAULTS:
        return _bad(f"unknown fault {fault!r}; known: 429, {', '.join(FAULTS)}")
    sim.inject(fault, count)
    return SimResponse(204)
