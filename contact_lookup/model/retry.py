"""The bounds of a job's retries, shared by the task (``tasks.backoff``) and the start-up
checks (``contact_lookup.settings``), so the configuration limits derive from them.

- Every countdown a job schedules (a CRM retry's backoff or ``Retry-After``, and a shared
  limiter deferral's wait) is capped at ``RETRY_MAX_DELAY`` seconds (default
  ``DEFAULT_MAX_DELAY_S``).
- A job retries at most ``MAX_RETRIES[purpose]`` times for CRM errors and is deferred at most
  ``MAX_DEFERRALS`` times by the shared limiter; then it ends with a failed result.

So a job's last execution starts at most ``horizon_s(max_delay_s)`` seconds after its first.
"""

from __future__ import annotations

DEFAULT_MAX_DELAY_S = 120.0
MAX_RETRIES = {"call_pop": 5, "call_log": 10, "message_log": 10, "relookup": 8}
# Deferrals by our own shared limiter do not count as retries, but a job is not deferred for
# ever either: at the limiter's longest wait (one window) this is hours of patience.
MAX_DEFERRALS = 500


def horizon_s(max_delay_s: float) -> float:
    """Seconds from a job's first execution to its last at most: every retry and deferral
    it may schedule, each at the longest countdown."""
    return (max(MAX_RETRIES.values()) + MAX_DEFERRALS) * max_delay_s
