"""The Celery app: settings, queues and routing, and the at-least-once options.

Reliability choices (docs/contracts.md, "Celery on Redis"):
- ``task_acks_late`` + ``task_reject_on_worker_lost``: a job held by a worker that dies is
  delivered again, so the task is idempotent (see tasks/find_contact.py).
- ``visibility_timeout`` is the same on broker and result backend and longer than the longest
  retry countdown (RETRY_MAX_DELAY; start-up refuses anything else, contact_lookup.settings),
  so delayed retries are not redelivered early.
- prefetch 1: a call pop never waits behind jobs a busy worker has already reserved.
- JSON only, events on (sent events too) so Flower sees each task from the moment it is sent.
"""

from __future__ import annotations

from typing import Any

from celery import Celery
from kombu import Queue

from contact_lookup.model.purpose import PURPOSES
from contact_lookup.settings import Settings

QUEUES = PURPOSES  # one queue per purpose: call_pop, call_log, message_log, relookup


def route_by_purpose(
    name: str, args: Any, kwargs: Any, options: Any, task: Any = None, **_: Any
) -> dict[str, str] | None:
    """Route ``find_contact`` by its ``purpose`` kwarg, whoever sends it."""
    purpose = (kwargs or {}).get("purpose") if isinstance(kwargs, dict) else None
    if name == "find_contact":
        return {"queue": purpose if purpose in QUEUES else "call_pop"}
    return None


class ContactLookupCelery(Celery):
    """Celery with the process's typed settings attached, so tasks read no environment."""

    settings: Settings


def create_app(settings: Settings) -> ContactLookupCelery:
    app = ContactLookupCelery("contact_lookup", set_as_current=False)
    app.settings = settings
    transport = {"visibility_timeout": int(settings.visibility_timeout_s)}
    broker_transport = {
        **transport,
        # kombu looks for jobs held by dead workers only every interval x throttle seconds
        # (10 x 10 by default), so they came back up to 100 s after the visibility timeout.
        # Sweep every interval instead (one cheap ZRANGE, under a Redis lock), a fraction of
        # the timeout: a dead worker's jobs return about VISIBILITY_TIMEOUT after it died.
        "unacked_restore_interval": max(1, min(10, int(settings.visibility_timeout_s) // 5)),
        "unacked_restore_throttle": 1,
    }
    app.conf.update(
        broker_url=settings.broker_url,
        result_backend=settings.result_backend,
        broker_transport_options=broker_transport,
        result_backend_transport_options=transport,
        broker_connection_retry_on_startup=True,
        task_serializer="json",
        result_serializer="json",
        accept_content=["json"],
        result_accept_content=["json"],
        result_expires=int(settings.result_expires_s),
        result_extended=True,
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        task_acks_on_failure_or_timeout=True,
        worker_prefetch_multiplier=1,
        task_queues=[Queue(name) for name in QUEUES],
        task_default_queue="call_pop",
        task_routes=(route_by_purpose,),
        task_track_started=True,
        task_send_sent_event=True,
        worker_send_task_events=True,
        worker_hijack_root_logger=False,
        worker_cancel_long_running_tasks_on_connection_loss=False,
        enable_utc=True,
        timezone="UTC",
    )
    # tasks.observe: per-job metrics and log line, from Celery's signals.
    app.conf.imports = ("tasks.find_contact", "tasks.observe")
    return app
