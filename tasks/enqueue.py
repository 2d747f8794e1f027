"""Sending ``find_contact`` jobs: the one place that knows queues, expiry and kwargs names."""

from __future__ import annotations

import threading
from typing import Any

from celery import Celery
from celery.result import AsyncResult
from kombu.exceptions import OperationalError
from kombu.transport.native_delayed_delivery import (
    bind_queue_to_native_delayed_delivery_exchange,
    declare_native_delayed_delivery_exchanges_and_queues,
)

from contact_lookup.core.request import LookupRequest
from tasks.celery_app import broker_countdown_s, is_amqp

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


_delayed_lock = threading.Lock()


def ensure_delayed_delivery(app: Celery, queue_name: str) -> None:
    """On RabbitMQ, make sure a countdown to ``queue_name`` has somewhere to go: Celery's
    native delayed delivery (quorum queues) publishes to the ``celery_delayed_*`` exchanges,
    which only a worker's start-up declares (``celery.worker.consumer.delayed_delivery``).
    A producer that sends a countdown before any worker ran in the vhost got
    ``NOT_FOUND - no exchange 'celery_delayed_27'`` (the webhook answered 500), and a queue
    not yet bound to the delivery exchange would drop the delayed job. So the producer
    declares them itself, once per app and queue, with the same kombu functions the worker
    uses (idempotent: the same names and arguments). Redis: nothing to do."""
    if not is_amqp(app.conf.broker_url or ""):
        return
    ready: set[str] = app.__dict__.setdefault("_delayed_delivery_ready", set())
    if queue_name in ready:
        return
    with _delayed_lock:
        if queue_name in ready:
            return
        queue = app.amqp.queues[queue_name]
        try:
            with app.connection_for_write() as connection:
                declare_native_delayed_delivery_exchanges_and_queues(
                    connection, app.conf.broker_native_delayed_delivery_queue_type
                )
                queue.bind(connection.default_channel).declare()
                bind_queue_to_native_delayed_delivery_exchange(connection, queue)
        except Exception as exc:  # the broker is unreachable: the caller's 503 path
            raise OperationalError(
                f"could not declare RabbitMQ's delayed delivery for {queue_name!r}: "
                f"{type(exc).__name__}"
            ) from exc
        ready.add(queue_name)


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
    if countdown:
        ensure_delayed_delivery(app, query.purpose)
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
