"""How long to wait before retrying a failed CRM request. Pure: tested without a worker.

The CRM's own answer wins: a ``Retry-After`` or reset time is honoured as given (capped).
Without one, exponential backoff with jitter ("equal jitter": half fixed, half random), so a
burst of jobs that failed together does not retry together.
"""

from __future__ import annotations

import random

from contact_lookup.model.errors import RateLimited, TransientCRMError
from contact_lookup.model.retry import DEFAULT_MAX_DELAY_S, MAX_DEFERRALS, MAX_RETRIES

__all__ = ["MAX_DEFERRALS", "MAX_RETRIES", "deferral_delay_s", "delay_s", "is_deferral"]

BASE_DELAY_S = 1.0
# Every countdown is capped (RETRY_MAX_DELAY, this by default) and start-up refuses a broker
# visibility timeout not above the cap, or the Redis transport would deliver the delayed
# message again before it is due (contact_lookup.settings).
MAX_DELAY_S = DEFAULT_MAX_DELAY_S


def delay_s(
    exc: TransientCRMError,
    attempt: int,
    rng: random.Random | None = None,
    cap_s: float = MAX_DELAY_S,
) -> float:
    """Seconds to wait before retry number ``attempt + 1`` (attempt counts from 0), at most
    ``cap_s``."""
    if isinstance(exc, RateLimited) and exc.retry_after_s is not None:
        return round(min(max(exc.retry_after_s, 0.0), cap_s), 3)
    ceiling = min(cap_s, BASE_DELAY_S * 2**attempt)
    rng = rng or random.Random()
    return round(ceiling / 2 + rng.uniform(0, ceiling / 2), 3)


def is_deferral(exc: TransientCRMError) -> bool:
    """Raised by the shared rate limiter before any request (no HTTP status), not by the CRM."""
    return isinstance(exc, RateLimited) and exc.status_code is None


def deferral_delay_s(
    exc: TransientCRMError, rng: random.Random | None = None, cap_s: float = MAX_DELAY_S
) -> float:
    """The limiter's exact wait plus a little jitter, so deferred jobs do not all come back
    in the same instant and race for the same freed tokens; at most ``cap_s``."""
    wait = exc.retry_after_s if isinstance(exc, RateLimited) and exc.retry_after_s else 0.0
    rng = rng or random.Random()
    return round(min(wait + rng.uniform(0, 0.1 + 0.1 * wait), cap_s), 3)
