"""Sending ``find_contact`` jobs: the one place that knows queues, expiry and kwargs names."""

from __future__ import annotations

from typing import Any

from celery import Celery
from celery.result import AsyncResult

from contact_lookup.core.request import LookupRequest
from tasks.celery_app import broker_countdown_s

# Short: a producer answering a webhook must fail fast (503) rather than hang on a dead broker.
PUBLISH_RETRY = {"max_retries": 2, "interval_start": 0, "interval_step": 0.25, "interval_max": 0.5}


def task_kwargs(
    connection: str,
    query: LookupRequest,
    call_pop: dict[str, Any] | None = None,
    supersede: tuple[str, int] | None = None,
) -> dict[str, Any]:
    """The JSON kwargs of docs/interface.md section 8; defaults left out to keep Flower readable."""
    kwargs: dict[str, Any] = {
        "connection": connection,
        "phoneNumber": query.phone_number,
        "purpose": query.purpose,
    }
    if query.overriding_format is not None:
        kwargs["overridingFormat"] = query.overriding_format
    if query.is_extension:
        kwargs["isExtension"] = True
    if query.force_refresh:
        kwargs["isForceRefreshAccountData"] = True
    if query.debug:
        kwargs["debug"] = True
    if query.resolve:
        kwargs["resolve"] = query.resolve
    if query.user and query.user != (call_pop or {}).get("rcExtensionId"):
        kwargs["rcExtensionId"] = query.user  # a call pop's worker reads it from callPop
    if call_pop:
        kwargs["callPop"] = call_pop
    if supersede:  # a call log's settle window (contact_lookup.core.supersede)
        kwargs["supersedeKey"], kwargs["decisionVersion"] = supersede
    return kwargs


def enqueue(
    app: Celery,
    connection: str,
    query: LookupRequest,
    *,
    call_pop: dict[str, Any] | None = None,
    task_id: str | None = None,
    supersede: tuple[str, int] | None = None,
    countdown_s: float | None = None,
) -> AsyncResult:
    """Send one lookup to its purpose's queue. A call pop expires after CALL_POP_DEADLINE.
    ``countdown_s``: run it no sooner (a call log's settle window; on RabbitMQ whole seconds,
    at least one: ``broker_countdown_s``)."""
    expires = app.settings.call_pop_deadline_s if query.purpose == "call_pop" else None
    countdown = broker_countdown_s(app, countdown_s) if countdown_s else None
    return app.send_task(
        "find_contact",
        kwargs=task_kwargs(connection, query, call_pop, supersede),
        countdown=countdown,
        queue=query.purpose,
        routing_key=query.purpose,
        expires=expires,
        task_id=task_id,
        retry=True,
        retry_policy=PUBLISH_RETRY,
    )
