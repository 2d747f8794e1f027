"""How long to wait before retrying a failed CRM request. Pure: tested without a worker.

The CRM's own answer wins: a ``Retry-After`` or reset time is honoured as given (capped).
Without one, exponential backoff with jitter ("equal jitter": half fixed, half random), so a
burst of jobs that failed together does not retry together.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Any

from contact_lookup.model.errors import RateLimited, TransientCRMError
from contact_lookup.model.retry import DEFAULT_MAX_DELAY_S, MAX_DEFERRALS, MAX_RETRIES

__all__ = [
    "MAX_DEFERRALS",
    "MAX_RETRIES",
    "Deferred",
    "RetryDecision",
    "decide_retry",
    "deferral_delay_s",
    "delay_s",
    "is_deferral",
]

BASE_DELAY_S = 1.0
# Every countdown is capped (RETRY_MAX_DELAY, this by default) and start-up refuses a broker
# visibility timeout not above the cap, or the Redis transport would deliver the delayed
# message again before it is due (contact_lookup.settings).
MAX_DELAY_S = DEFAULT_MAX_DELAY_S
# The shortest countdown of a deferral (unless the stress setting asks for the limiter's exact
# wait): a retry due within milliseconds reaches another worker while this one is still
# storing its RETRY. The result backend makes that race harmless (tasks/backend.py); this
# keeps it rare.
MIN_DEFERRAL_S = 0.25


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
    exc: TransientCRMError,
    window_s: float | None = None,
    rng: random.Random | None = None,
    *,
    spread: bool = True,
    priority: bool = False,
    cap_s: float = MAX_DELAY_S,
) -> float:
    """Seconds until a deferred job tries again, at least ``MIN_DEFERRAL_S``, at most
    ``cap_s`` (RETRY_MAX_DELAY).

    ``wait`` is the limiter's exact wait (``retry_after_s``: until enough tokens are free, or
    until a CRM's hold-off ends). A batch job (``priority`` False) wakes at a uniform random
    point of ``[wait, wait + width]``, where ``width`` is the wait itself capped at one budget
    window (``window_s``): the limiter frees tokens one by one as their stamps age out (a
    sliding-window log), so jobs deferred together and all woken at the first free token
    would be deferred again but one ("thundering herd"); spread out, about one comes back per
    freed token ("Exponential Backoff And Jitter", AWS Architecture Blog, 2015: full jitter).
    Not wider than the wait: a short hold-off (a CRM's ``Retry-After: 1``) is not stretched
    to a whole window. A call pop (``priority``) gets 10 % jitter only: its deadline leaves
    no room to spread.

    ``spread=False`` is the stress setting (``DEFERRAL_SPREAD=none``): the limiter's wait
    exactly, as short as it allows, for tests that must make redelivery races likely.
    """
    wait = exc.retry_after_s if isinstance(exc, RateLimited) and exc.retry_after_s else 0.0
    wait = max(wait, 0.0)
    if not spread:
        return round(min(wait, cap_s), 3)
    rng = rng or random.Random()
    if priority:
        width = 0.1 + 0.1 * wait
    else:
        width = max(wait, MIN_DEFERRAL_S)
        if window_s and window_s > 0:
            width = min(width, window_s)
    return round(min(max(wait + rng.uniform(0, width), MIN_DEFERRAL_S), cap_s), 3)


class Deferred(Exception):
    """The reason a job was put back by the shared rate limiter (no CRM request was made).

    Given to ``Task.retry`` instead of the ``RateLimited`` error, so the RETRY state and
    Flower show ``Deferred('... until 2026-11-30T01:02:03.456Z', 1796000523.456)`` without a
    traceback. ``args``: (message, wake-up time as Unix epoch seconds): the JSON result
    backend stores exceptions by their ``args``, and ``lookup --timeout`` reads them back.
    """

    def __init__(self, message: str, until: float) -> None:
        super().__init__(message, until)
        self.message = message
        self.until = until

    def __str__(self) -> str:
        return self.message


@dataclass(frozen=True)
class RetryDecision:
    """What a job does after a transient failure (``decide_retry``).

    ``retry``: schedule a retry in ``wait_s`` seconds with ``state`` as its ``retryState``;
    else give up with a failed result whose message starts with ``why`` (``too_late``: the
    wait would outlast a call pop's deadline). ``deferral``: the failure was the shared
    limiter's deferral (no CRM request was made).
    """

    retry: bool
    wait_s: float
    deferral: bool
    why: str = ""
    too_late: bool = False
    state: dict[str, Any] = field(default_factory=dict)


def decide_retry(
    exc: TransientCRMError,
    purpose: str,
    state: dict[str, Any],
    *,
    now: float,
    deadline: float | None,
    cap_s: float = MAX_DELAY_S,
    window_s: float | None = None,
    spread: bool = True,
    min_countdown_s: float = 0.0,
    rng: random.Random | None = None,
) -> RetryDecision:
    """The retry rule, pure (tests/unit/test_backoff_and_kwargs.py):

    - the wait: a deferral's spread wait (``deferral_delay_s``), else the CRM's own wait or
      exponential backoff (``delay_s``), at most ``cap_s``, at least ``min_countdown_s`` (the
      broker's shortest countdown: 1 s on RabbitMQ);
    - give up when the wait would end at or after ``deadline`` (a call pop's phone stopped
      ringing), after ``MAX_RETRIES[purpose]`` retries the CRM caused, or after
      ``MAX_DEFERRALS`` waits in all; deferrals do not count as CRM retries, or a long batch
      would give up while merely queued;
    - else retry, with ``state`` (``retryState``: ``waits``, ``crmRetries``, ``rateLimit``)
      carrying the waits so far.
    """
    waits: list[float] = list(state.get("waits", []))
    crm_retries = int(state.get("crmRetries", 0))
    deferral = is_deferral(exc)
    if deferral:
        priority = purpose == "call_pop"
        wait = deferral_delay_s(exc, window_s, rng, spread=spread, priority=priority, cap_s=cap_s)
    else:
        wait = delay_s(exc, crm_retries, rng, cap_s=cap_s)
    wait = max(min_countdown_s, wait)
    rate_limit = exc.rate_limit.tracking() if exc.rate_limit else {}
    if deadline is not None and now + wait >= deadline:
        why = "The call pop could not be answered before the phone stopped ringing. "
        return RetryDecision(False, wait, deferral, why, too_late=True)
    out_of_retries = not deferral and crm_retries >= MAX_RETRIES[purpose]
    if out_of_retries or len(waits) >= MAX_DEFERRALS:
        return RetryDecision(False, wait, deferral, f"Gave up after {len(waits)} retries. ")
    new_state = {
        "waits": [*waits, wait],
        "crmRetries": crm_retries + (0 if deferral else 1),
        "rateLimit": rate_limit,
    }
    return RetryDecision(True, wait, deferral, state=new_state)
