"""``contact-lookup lookup`` without ``--local``: enqueue, then wait for a worker's result.

When no result comes within ``--timeout``, the job's stored state says why, and the answer
says so (``errorType``):

- ``RateLimitDeferred``: a worker took it and the shared rate limit deferred it until T
  (the ``Deferred`` reason of its RETRY state, tasks/backoff.py); it is left to finish;
- ``WorkerTimeout``: a worker holds it (STARTED, or retrying after a CRM error) but did not
  finish in time; it is left to finish;
- ``WorkerTimeout`` "No worker answered": no worker took it (no state stored); it is
  revoked, so a worker started later does not do work nobody waits for.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from celery import states
from celery.exceptions import TaskRevokedError
from celery.exceptions import TimeoutError as CeleryTimeout
from kombu.exceptions import OperationalError

from contact_lookup.core.request import LookupRequest
from contact_lookup.model import contact
from contact_lookup.model.errors import CRMUnavailable
from contact_lookup.model.redaction import redact_url
from contact_lookup.settings import Settings
from tasks.backoff import Deferred
from tasks.celery_app import create_app
from tasks.enqueue import enqueue


def lookup_remote(
    settings: Settings, connection: str, query: LookupRequest, timeout_s: float
) -> dict[str, Any]:
    app = create_app(settings)
    # A result backend that is down would fail inside send_task only after Celery's
    # reconnects (about 20 s), as a RuntimeError; asked first, it fails at once
    # (redis.RedisError, one line from the command).
    try:
        app.backend.client.ping()
    except BaseException:
        app.close()
        raise
    try:
        pending = enqueue(app, connection, query)
    except OperationalError:
        unreachable = CRMUnavailable(
            f"The broker at {redact_url(settings.broker_url)} is unreachable; "
            "the lookup was not queued."
        )
        unreachable.hint = "Start it (or fix BROKER_URL), then try again."  # not the CRM's
        return contact.failure(unreachable)
    try:
        result: dict[str, Any] = pending.get(timeout=timeout_s, propagate=True)
        return result
    except CeleryTimeout:
        return _timed_out(app.backend.get_task_meta(pending.id), pending, query, timeout_s)
    except TaskRevokedError:
        return contact.no_worker_answer(
            "The job expired before a worker took it "
            "(a call pop is only worth answering while the phone rings)."
        )
    finally:
        app.close()


def _timed_out(
    meta: dict[str, Any], pending: Any, query: LookupRequest, timeout_s: float
) -> dict[str, Any]:
    """The answer for a job that had no result after ``timeout_s`` (module docstring)."""
    status = meta.get("status")
    reason = meta.get("result")
    if status == states.RETRY and isinstance(reason, Deferred):
        until = datetime.fromtimestamp(reason.until, UTC).isoformat(timespec="milliseconds")
        result = contact.no_worker_answer(
            f"Deferred by the shared rate limit until {until.replace('+00:00', 'Z')}; "
            f"no result within {timeout_s:g} s. The job stays queued and will run then."
        )
        result["extraDataTracking"] = {
            "errorType": "RateLimitDeferred",
            "deferredUntil": round(reason.until, 3),
        }
        return result
    if status in (states.STARTED, states.RETRY, states.RECEIVED):
        what = "is retrying after a CRM error" if status == states.RETRY else "is running it"
        return contact.no_worker_answer(
            f"A worker {what} but gave no result within {timeout_s:g} s; it is left to finish."
        )
    pending.revoke()  # nobody is waiting any more; don't let a late worker do the work
    return contact.no_worker_answer(
        f"No worker answered within {timeout_s:g} s. Is a worker consuming the "
        f"'{query.purpose}' queue? Start one with: contact-lookup worker -Q {query.purpose}"
    )
