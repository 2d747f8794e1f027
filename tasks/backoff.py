"""How long to wait before retrying a failed CRM request. Pure: tested without a worker.

The CRM's own answer wins: a ``Retry-After`` or reset time is honoured as given (capped).
Without one, exponential backoff with jitter ("equal jitter": half fixed, half random), so a
burst of jobs that failed together does not retry together.
"""

from __future__ import annotations

import random

from contact_lookup.model.errors import RateLimited, TransientCRMError

BASE_DELAY_S = 1.0
# Every countdown stays well under the broker's visibility timeout (default 600 s), or the
# Redis transport would deliver the delayed message again before it is due.
MAX_DELAY_S = 120.0
MAX_RETRIES = {"call_pop": 5, "call_log": 10, "message_log": 10, "relookup": 8}
# Deferrals by our own shared limiter do not count as retries, but a job is not deferred for
# ever either: at the limiter's longest wait (one window) this is hours of patience.
MAX_DEFERRALS = 500


def delay_s(exc: TransientCRMError, attempt: int, rng: random.Random | None = None) -> float:
    """Seconds to wait before retry number ``attempt + 1`` (attempt counts from 0)."""
    if isinstance(exc, RateLimited) and exc.retry_after_s is not None:
        return round(min(max(exc.retry_after_s, 0.0), MAX_DELAY_S), 3)
    ceiling = min(MAX_DELAY_S, BASE_DELAY_S * 2**attempt)
    rng = rng or random.Random()
    return round(ceiling / 2 + rng.uniform(0, ceiling / 2), 3)


def is_deferral(exc: TransientCRMError) -> bool:
    """Raised by the shared rate limiter before any request (no HTTP status), not by the CRM."""
    return isinstance(exc, RateLimited) and exc.status_code is None


def deferral_delay_s(exc: TransientCRMError, rng: random.Random | None = None) -> float:
    """The limiter's exact wait plus a little jitter, so deferred jobs do not all come back
    in the same instant and race for the same freed tokens."""
    wait = exc.retry_after_s if isinstance(exc, RateLimited) and exc.retry_after_s else 0.0
    rng = rng or random.Random()
    return round(min(wait + rng.uniform(0, 0.1 + 0.1 * wait), MAX_DELAY_S), 3)
