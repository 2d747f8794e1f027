"""The Celery app: settings, queues and routing, and the at-least-once options.

Reliability choices (docs/contracts.md, "Celery on Redis"):
- ``task_acks_late`` + ``task_reject_on_worker_lost``: a job held by a worker that dies is
  delivered again, so the task is idempotent (see tasks/find_contact.py).
- ``visibility_timeout`` is the same on broker and result backend and longer than the longest
  retry countdown (RETRY_MAX_DELAY; start-up refuses anything else, contact_lookup.settings),
  so delayed retries are not redelivered early.
- prefetch 1: a call pop never waits behind jobs a busy worker has already reserved.
- JSON only, events on (sent events too) so Flower sees each task from the moment it is sent.
- A finished result is final (tasks/backend.py: stored by compare-and-set), and task events
  are redacted, with failed lookups shown as failed tasks (tasks/events.py).

On RabbitMQ (an ``amqp://`` BROKER_URL; README "RabbitMQ as the broker"): quorum queues with a
delivery limit and a dead-letter queue (``purpose_queues``), publisher confirms, and countdown
retries by Celery's native delayed delivery (``broker_countdown_s``). The visibility timeout
is Redis's alone: RabbitMQ returns a dead worker's jobs when its connection drops.
Start-up steps: the state Redis must not evict (``StateRedisCheck``), and on RabbitMQ the
dead-letter queue is declared (``DeadLetterQueue``).
"""

from __future__ import annotations

from collections.abc import MutableMapping
from typing import Any
from urllib.parse import urlsplit

from celery import Celery, bootsteps
from celery.app.events import Events
from kombu import Exchange, Queue

from contact_lookup.model.purpose import PURPOSES
from contact_lookup.redis_urls import celery_url_and_options
from contact_lookup.settings import Settings
from tasks.kombu_redis import guard_closed_transport

QUEUES = PURPOSES  # one queue per purpose: call_pop, call_log, message_log, relookup

# RabbitMQ: a job delivered this many times (each worker death or requeue counts) is a poison
# job; the broker then dead-letters it to DEAD_LETTER_QUEUE instead of looping it forever
# (https://www.rabbitmq.com/docs/quorum-queues#poison-message-handling; 20 is RabbitMQ 4's
# default). A returned job is redelivered first, so a worker killed again and again before
# it finishes its first jobs re-counts the same ones: 10 was reached in the kill test (20
# kills, one every 0.2-1.5 s), so the limit is 20.
DELIVERY_LIMIT = 20
DEAD_LETTER_QUEUE = "dead_letter"


def is_amqp(url: str) -> bool:
    return urlsplit(url).scheme in ("amqp", "amqps", "pyamqp")


def purpose_queues(broker_url: str) -> list[Queue]:
    """The four purpose queues, declared for the broker in use.

    On RabbitMQ each is a durable quorum queue (``x-queue-type=quorum``: replicated, and the
    queue type with a delivery limit) with ``x-delivery-limit``, bound to a topic exchange of
    its own name: Celery's native delayed delivery, which carries countdown retries on quorum
    queues, cannot bind a direct exchange
    (https://docs.celeryq.dev/en/stable/getting-started/backends-and-brokers/rabbitmq.html,
    "Using Quorum Queues"). A job over the limit is dead-lettered to ``DEAD_LETTER_QUEUE``,
    except a call pop: Celery gives it the AMQP ``expiration`` of CALL_POP_DEADLINE, and an
    expired or poison call pop is worth nothing once the phone stopped ringing, so it is
    dropped. On Redis they are kombu's plain list queues.
    """
    if not is_amqp(broker_url):
        return [Queue(name) for name in QUEUES]
    queues = []
    for name in QUEUES:
        arguments: dict[str, Any] = {"x-queue-type": "quorum", "x-delivery-limit": DELIVERY_LIMIT}
        if name != "call_pop":
            arguments["x-dead-letter-exchange"] = ""  # the default exchange: by queue name
            arguments["x-dead-letter-routing-key"] = DEAD_LETTER_QUEUE
        exchange = Exchange(name, type="topic", durable=True)
        queues.append(
            Queue(name, exchange, routing_key=name, durable=True, queue_arguments=arguments)
        )
    return queues


def broker_countdown_s(app: Celery, seconds: float) -> float:
    """The countdown to give a retry on this app's broker, in seconds.

    RabbitMQ quorum queues carry countdowns by Celery's native delayed delivery, which counts
    whole seconds and refuses less than one (kombu's ``calculate_routing_key``: "countdown must
    be a positive number"), so there a retry waits at least 1 s. Redis keeps the exact value.
    """
    return max(1.0, seconds) if is_amqp(app.conf.broker_url or "") else seconds


def dead_letter_queue() -> Queue:
    """Where RabbitMQ puts jobs over ``DELIVERY_LIMIT``: kept for an operator, consumed by
    no worker (``rabbitmqctl list_queues`` shows them; shovel them back once fixed)."""
    return Queue(
        DEAD_LETTER_QUEUE,
        durable=True,
        # Kept a week, at most 100 000 jobs (the oldest dropped first): never unbounded.
        queue_arguments={
            "x-queue-type": "quorum",
            "x-message-ttl": 7 * 86400 * 1000,
            "x-max-length": 100_000,
        },
    )


def route_by_purpose(
    name: str, args: Any, kwargs: Any, options: Any, task: Any = None, **_: Any
) -> dict[str, str] | None:
    """Route ``find_contact`` by its ``purpose`` kwarg, whoever sends it."""
    purpose = (kwargs or {}).get("purpose") if isinstance(kwargs, dict) else None
    if name == "find_contact":
        return {"queue": purpose if purpose in QUEUES else "call_pop"}
    return None


def strip_celery_cli_urls(environ: MutableMapping[str, str], settings: Settings) -> None:
    """Make the ``celery`` command's copies of BROKER_URL and RESULT_BACKEND the settings' URLs.

    The ``celery`` CLI reads BROKER_URL and RESULT_BACKEND itself and copies them, as given, to
    CELERY_BROKER_URL / CELERY_RESULT_BACKEND, which then override the app's configuration
    (celery/bin/celery.py, celery/app/utils.py). The settings' URLs differ from what was given
    in two ways the copies would undo: ``REDIS_PASSWORD`` inserted (docker-compose passes it
    apart from URLs without one: the worker could not authenticate), and a Sentinel URL
    without its query (kombu and Celery take the master name as a transport option, set by
    ``create_app``). Called by ``worker`` (``celery -A worker``) as it builds the app.
    """
    for name, url in (
        ("CELERY_BROKER_URL", settings.broker_url),
        ("CELERY_RESULT_BACKEND", settings.result_backend),
    ):
        if name in environ:
            environ[name] = celery_url_and_options(url)[0]


class ContactLookupCelery(Celery):
    """Celery with the process's typed settings attached, so tasks read no environment."""

    settings: Settings


class LookupEvents(Events):
    """``app.events`` whose dispatcher rewrites task events (tasks/events.py)."""

    dispatcher_cls = "tasks.events:LookupEventDispatcher"


class StateRedisCheck(bootsteps.StartStopStep):
    """Worker start-up step: refuse to start on a state Redis that may evict keys.

    ``ConfigError`` from ``Runtime.check_state_redis`` stops the worker (Celery logs it as an
    unrecoverable error and exits non-zero) before it consumes a job; an unreachable state
    Redis is logged and the worker starts, as it does for an unreachable broker.
    """

    def start(self, parent: Any) -> None:
        from tasks.runtime import runtime_for

        runtime_for(parent.app).check_state_redis()


class DeadLetterQueue(bootsteps.StartStopStep):
    """Worker start-up step on RabbitMQ: declare the dead-letter queue, so a poison job over
    the delivery limit is kept (RabbitMQ drops dead letters routed to no queue)."""

    requires = ("celery.worker.consumer.connection:Connection",)

    def start(self, parent: Any) -> None:
        if is_amqp(parent.app.conf.broker_url):
            dead_letter_queue()(parent.connection.default_channel).declare()


def create_app(settings: Settings) -> ContactLookupCelery:
    app = ContactLookupCelery("contact_lookup", set_as_current=False, events=LookupEvents)
    if settings.result_backend.startswith(("redis://", "rediss://")):
        # Celery's ``backend=`` argument is only a default URL; the class is ``backend_cls``.
        app.backend_cls = "tasks.backend:FinalResultBackend"
    app.settings = settings
    guard_closed_transport()  # a lost Redis broker is reconnected to, not fatal (kombu_redis)
    transport = {"visibility_timeout": int(settings.visibility_timeout_s)}
    if is_amqp(settings.broker_url):
        # Publisher confirms: a send returns only once RabbitMQ has taken the message (for a
        # quorum queue, once a majority of its replicas have), so the webhook answers 200
        # only for jobs the broker holds (https://www.rabbitmq.com/docs/confirms).
        broker_transport: dict[str, Any] = {"confirm_publish": True}
    else:
        broker_transport = {
            **transport,
            # kombu looks for jobs held by dead workers only every interval x throttle
            # seconds (10 x 10 by default), so they came back up to 100 s after the
            # visibility timeout. Sweep every interval instead (one cheap ZRANGE, under a
            # Redis lock), a fraction of the timeout: a dead worker's jobs return about
            # VISIBILITY_TIMEOUT after it died.
            "unacked_restore_interval": max(1, min(10, int(settings.visibility_timeout_s) // 5)),
            "unacked_restore_throttle": 1,
        }
    # sentinel:// URLs: Celery and kombu take the master's name as a transport option.
    broker_url, broker_sentinel = celery_url_and_options(settings.broker_url)
    result_backend, result_sentinel = celery_url_and_options(settings.result_backend)
    app.conf.update(
        broker_url=broker_url,
        result_backend=result_backend,
        broker_transport_options={**broker_transport, **broker_sentinel},
        result_backend_transport_options={**transport, **result_sentinel},
        broker_connection_retry_on_startup=True,
        task_serializer="json",
        result_serializer="json",
        accept_content=["json"],
        result_accept_content=["json"],
        result_expires=int(settings.result_expires_s),
        # No result_extended: nothing reads a stored result's name, args or kwargs (Flower
        # has them from the task events), and they cost every STARTED and SUCCESS write a
        # second copy of the kwargs, a phone number among them. The fields that are read,
        # ``retries`` (relookup's progress), ``queue`` and ``worker``, tasks/backend.py stores.
        result_extended=False,
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        task_acks_on_failure_or_timeout=True,
        worker_prefetch_multiplier=1,
        task_queues=purpose_queues(settings.broker_url),
        task_default_queue="call_pop",
        task_routes=(route_by_purpose,),
        # STARTED: relookup and ``lookup`` tell a held job from a lost one by it; its write
        # also answers the task's already-done check (tasks/backend.py ``stored_success``).
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
    app.steps["worker"].add(StateRedisCheck)
    app.steps["consumer"].add(DeadLetterQueue)
    return app
