"""The ``find_contact`` Celery task (docs/interface.md section 8): thin over the lookup core.

It validates its JSON kwargs, calls ``LookupService.lookup``, and turns transient CRM errors
into retries with a countdown (never a sleep in the worker thread). Each wait is carried
forward in the ``retryState`` kwarg, visible in Flower, and reported in the final result's
``extraDataTracking``. A call pop's deadline is its message's ``expires``: a retry that would
land after it ends the job at once with a failed "rate limited" result.

Idempotent under redelivery (acks_late): a job whose result is already stored returns that
result and publishes nothing again; the cache write it repeats is an overwrite. A stored
SUCCESS is never replaced by a later RETRY, STARTED or REVOKED (tasks/backend.py).

A deferral by the shared rate limiter is not an error: it is logged at INFO as a deferral,
retried with a ``Deferred`` reason (no traceback in the RETRY state or Flower) and woken at
a random point after the limiter's wait (tasks/backoff.py: spread for batches, not for call
pops). Any other exception a lookup
raises becomes a failed result (``errorType`` ``UnexpectedError``) whose message, like every
exception text here, went through the process's redactor: exception messages quote secrets
(``UnicodeEncodeError`` repeats the header value it could not encode).

An execution about to schedule a retry first checks for a stored successful result: a retry
of a job that already has one (a copy finished meanwhile) is dropped, so a misconfigured
broker cannot make a finished job run again.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from datetime import UTC, datetime
from typing import Any

from celery import Task, shared_task

from contact_lookup.core import callpop, supersede
from contact_lookup.core.ratelimit import limit_for
from contact_lookup.core.request import LookupRequest
from contact_lookup.model import contact
from contact_lookup.model.errors import (
    ContactLookupError,
    InvalidInput,
    RateLimited,
    TransientCRMError,
)
from contact_lookup.model.purpose import PURPOSES
from contact_lookup.model.redaction import PROCESS
from tasks import backoff
from tasks.celery_app import broker_countdown_s
from tasks.runtime import runtime_for

log = logging.getLogger(__name__)

_BOOLS = ("isExtension", "isForceRefreshAccountData", "debug")
_STRINGS = ("overridingFormat", "resolve", "rcExtensionId")
_SUPERSEDE = ("supersedeKey", "decisionVersion")  # a call log's settle window
KWARGS = {"connection", "phoneNumber", "purpose", *_BOOLS, *_STRINGS, "callPop", "retryState"}
KWARGS |= set(_SUPERSEDE)


def parse_kwargs(kwargs: dict[str, Any]) -> tuple[str, LookupRequest, dict[str, Any] | None]:
    """(connection, query, callPop) from the task's kwargs, or InvalidInput saying what's wrong."""
    unknown = set(kwargs) - KWARGS
    if unknown:
        raise InvalidInput(f"Unknown task arguments: {', '.join(sorted(unknown))}.")
    conn, number = kwargs.get("connection"), kwargs.get("phoneNumber")
    purpose = kwargs.get("purpose", "call_pop")
    if not isinstance(conn, str) or not conn:
        raise InvalidInput("The task needs a 'connection' (a connection name).")
    if not isinstance(number, str) or not number.strip():
        raise InvalidInput("The task needs a 'phoneNumber' string.")
    if purpose not in PURPOSES:
        raise InvalidInput(f"'purpose' must be one of {', '.join(PURPOSES)}.")
    for name in _BOOLS:
        if not isinstance(kwargs.get(name, False), bool):
            raise InvalidInput(f"'{name}' must be true or false.")
    for name in _STRINGS:
        if kwargs.get(name) is not None and not isinstance(kwargs[name], str):
            raise InvalidInput(f"'{name}' must be a string.")
    pop = kwargs.get("callPop")
    if pop is not None and not (
        isinstance(pop, dict) and pop.get("rcAccountId") and pop.get("rcExtensionId")
    ):
        raise InvalidInput("'callPop' must name rcAccountId and rcExtensionId.")
    query = LookupRequest(
        phone_number=number,
        purpose=purpose,
        overriding_format=kwargs.get("overridingFormat"),
        is_extension=kwargs.get("isExtension", False),
        force_refresh=kwargs.get("isForceRefreshAccountData", False),
        debug=kwargs.get("debug", False),
        resolve=kwargs.get("resolve"),
        user=kwargs.get("rcExtensionId"),
    )
    return conn, query, pop


def _retry_state(kwargs: dict[str, Any]) -> dict[str, Any]:
    """The task's own bookkeeping between retries; InvalidInput when a sender mangled it."""
    state = kwargs.get("retryState") or {"waits": []}
    waits = state.get("waits", []) if isinstance(state, dict) else None
    if (
        not isinstance(waits, list)
        or not all(isinstance(w, int | float) and not isinstance(w, bool) for w in waits)
        or not isinstance(state.get("crmRetries", 0), int)
        or not isinstance(state.get("rateLimit") or {}, dict)
    ):
        raise InvalidInput("'retryState' is the task's own retry bookkeeping: leave it out.")
    return {**state, "waits": waits}


def _deadline(task: Task) -> float | None:
    expires = task.request.expires
    if not expires:
        return None
    if isinstance(expires, str):
        return datetime.fromisoformat(expires).timestamp()
    return float(expires.timestamp()) if isinstance(expires, datetime) else None


def _stored_result(task: Task) -> dict[str, Any] | None:
    """The successful result of another execution of this very job (a redelivered copy that
    finished first), read at every execution, retries included, and before scheduling a retry:
    a job whose result is stored is not executed or retried again."""
    if not task.request.id:
        return None
    meta = task.backend.get_task_meta(task.request.id)
    if meta.get("status") == "SUCCESS" and isinstance(meta.get("result"), dict):
        result: dict[str, Any] = meta["result"]
        return result
    return None


@shared_task(name="find_contact", bind=True, max_retries=None)
def find_contact(self: Task, **kwargs: Any) -> dict[str, Any]:
    earlier = _stored_result(self)
    if earlier is not None:
        log.info("find_contact %s: already done, returning the stored result", self.request.id)
        return earlier
    dropped = supersede.dropped_result(runtime_for(self.app).state_redis, kwargs)
    if dropped is not None:  # a newer decision for the same call replaced this job
        log.info("find_contact %s: superseded by a newer decision, not run", self.request.id)
        return dropped
    try:
        state = _retry_state(kwargs)
        conn, query, pop = parse_kwargs(kwargs)
    except InvalidInput as exc:
        return contact.failure(exc)
    waits: list[float] = list(state["waits"])
    if query.user is None and pop is not None:  # a call pop's extension is its CRM user
        query = dataclasses.replace(query, user=str(pop["rcExtensionId"]))
    runtime = runtime_for(self.app)
    try:
        result = runtime.service.lookup(conn, query)
    except TransientCRMError as exc:
        return _retry_or_fail(self, kwargs, query.purpose, exc, state)
    except ContactLookupError as exc:  # config errors found late, e.g. a secret unset
        result = contact.failure(exc)
    except Exception as exc:  # a bug or a library's surprise: a failed result, redacted
        result = _unexpected(self, exc)
    if waits:
        result["extraDataTracking"].update(_wait_tracking(waits, state.get("rateLimit")))
    if pop is not None and query.purpose == "call_pop":
        callpop.publish(
            runtime.state_redis,
            pop["rcAccountId"],
            pop["rcExtensionId"],
            pop.get("telephonySessionId"),
            query.phone_number,
            result,
        )
    return result


class UnexpectedError(ContactLookupError):
    """A lookup raised something no part of the project raises on purpose (errorType)."""


def _unexpected(task: Task, exc: Exception) -> dict[str, Any]:
    """A failed result for ``exc``; its text and the logged traceback are redacted."""
    log.error(
        "find_contact %s: the lookup raised %s\n%s",
        task.request.id,
        type(exc).__name__,
        PROCESS.traceback(exc),
    )
    return contact.failure(
        UnexpectedError(
            f"The lookup failed unexpectedly ({PROCESS.exception(exc)}).",
            hint="This is a bug or a misconfiguration; the worker's log has the details.",
        )
    )


def _window_s(task: Task, connection: str) -> float | None:
    """The connection's rate-limit window in seconds, or None when it has none or is unknown."""
    runtime = runtime_for(task.app)
    try:
        conn = runtime.config.connection(connection)
        limit = limit_for(conn, runtime.connectors.connector_class(conn).default_rate_limit)
    except ContactLookupError:
        return None
    return limit.window_s if limit else None


def _deferred(connection: str, wait: float) -> backoff.Deferred:
    until = time.time() + wait
    stamp = datetime.fromtimestamp(until, UTC).isoformat(timespec="milliseconds")
    return backoff.Deferred(
        f"deferred by the shared rate limit of {connection!r} until {stamp.replace('+00:00', 'Z')}",
        round(until, 3),
    )


def _wait_tracking(waits: list[float], rate_limit: dict[str, Any] | None) -> dict[str, Any]:
    return {"retryCount": len(waits), "backoffSeconds": waits, **(rate_limit or {})}


def _retry_or_fail(
    task: Task,
    kwargs: dict[str, Any],
    purpose: str,
    exc: TransientCRMError,
    state: dict[str, Any],
) -> dict[str, Any]:
    settings = task.app.settings
    decision = backoff.decide_retry(
        exc,
        purpose,
        state,
        now=time.time(),
        deadline=_deadline(task),
        cap_s=settings.retry_max_delay_s,
        window_s=_window_s(task, str(kwargs.get("connection"))),
        spread=settings.deferral_spread != "none",
        min_countdown_s=broker_countdown_s(task.app, 0.0),
    )
    waits: list[float] = list(state.get("waits", []))
    wait = decision.wait_s
    if not decision.retry:
        rate_limit = exc.rate_limit.tracking() if exc.rate_limit else {}
        tracking = _wait_tracking(waits, rate_limit)
        result = contact.failure(exc, tracking=tracking, prefix=decision.why)
        if decision.too_late and isinstance(exc, RateLimited):
            result["extraDataTracking"]["wouldWaitSeconds"] = wait
        return result
    twin = _stored_result(task)
    if twin is not None:  # another copy of this job already succeeded: drop this retry
        log.info("find_contact %s: retry dropped, the job already has a result", task.request.id)
        return twin
    reason: Exception = exc
    if decision.deferral:
        reason = _deferred(str(kwargs.get("connection")), wait)
        log.info("find_contact %s: %s (deferral %d)", task.request.id, reason, len(waits) + 1)
    else:
        log.warning(
            "find_contact %s: %s; retry %d in %.3f s",
            task.request.id,
            type(exc).__name__,
            len(waits) + 1,
            wait,
        )
    retry = task.retry(
        kwargs={**kwargs, "retryState": decision.state}, countdown=wait, exc=reason, throw=False
    )
    # Celery keeps the retry's traceback in the result backend and sends it to Flower. The
    # CRM error's cause (a requests error) can quote a request URL that holds a token
    # (Bullhorn's login), so the chain is left out of it: ``from None``.
    raise retry from None
