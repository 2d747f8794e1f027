"""Cached call pops in Flower: the task events of a task that never existed.

A call pop whose answer is cached is published by the producer itself (producers/pipeline.py),
with no Celery task, so Flower never saw it. For each one, this module sends the three task
events a worker would (Celery user guide, "Event Reference":
https://docs.celeryq.dev/en/stable/userguide/monitoring.html#event-reference):
``task-received`` (name ``call_pop.cached``, kwargs with the number masked to its last 4
digits, the connection and the purpose), ``task-started`` and ``task-succeeded`` (``runtime``:
the delivery's arrival to the PUBLISH; ``result``: how many contacts, never who). Flower
then lists it in Tasks as SUCCESS and counts it in ``flower_events_total`` and
``flower_task_runtime_seconds`` (flower/events.py, ``PrometheusMetrics.observe_task``;
``task-started`` keeps its prefetched-tasks gauge from growing). The sender is the process's
stable name (``webhook@<host>``; tasks.events.producer_hostname), never ``gen<PID>``.

The pop is never slowed down or failed by this: ``record`` only puts a small tuple on a
bounded queue (dropped when full); one daemon thread per process sends the events in
batches over its own broker connection, and drops a batch (logging once per outage) when the
broker is down. At exit, what is queued gets up to ``FLUSH_AT_EXIT_S`` to go out.
"""

from __future__ import annotations

import atexit
import contextlib
import logging
import os
import queue
import threading
import time
import uuid as uuidlib
from collections.abc import Iterable
from typing import Any

from celery import Celery

from contact_lookup.logs import mask_number
from tasks.events import producer_hostname

log = logging.getLogger("contact_lookup.flower_events")

TASK_NAME = "call_pop.cached"
MAX_PENDING = 10_000  # pops waiting for their events; beyond it they are dropped
BATCH = 200
FLUSH_AT_EXIT_S = 2.0

# (masked number, connection, purpose, contacts, arrived at (Unix s), runtime s)
_Pop = tuple[str, str, str, int, float, float]


def cached_pops(app: Celery, outcomes: Iterable[Any], started: float) -> None:
    """Queue Flower events for each ``answered-from-cache`` outcome of one delivery;
    ``started`` is ``time.monotonic()`` at the delivery's arrival. Never raises."""
    pops = [o for o in outcomes if getattr(o, "action", None) == "answered-from-cache"]
    if not pops:
        return
    runtime = max(0.0, time.monotonic() - started)
    arrived = time.time() - runtime
    try:
        sender = _sender(app)
        for o in pops:
            found = (o.result or {}).get("matchedContactInfo") or []
            contacts = sum(1 for c in found if isinstance(c, dict) and not c.get("isNewContact"))
            pop = (mask_number(o.phone_number), str(getattr(o, "connection", None) or "-"))
            sender.put((*pop, str(o.purpose or "call_pop"), contacts, arrived, runtime))
    except Exception:  # monitoring must never fail a call pop
        log.debug("cached call pop not queued for Flower", exc_info=True)


def events_of(pop: _Pop, task_id: str) -> list[tuple[str, dict[str, Any]]]:
    """The three task events of one cached pop (pure; see the module docstring)."""
    masked, connection, purpose, contacts, arrived, runtime = pop
    kwargs = {"phoneNumber": masked, "connection": connection, "purpose": purpose}
    common = {"uuid": task_id}  # the dispatcher adds hostname, pid and clock
    return [
        (
            "task-received",
            {
                **common,
                "name": TASK_NAME,
                "args": "()",
                "kwargs": repr(kwargs),
                "root_id": task_id,
                "parent_id": None,
                "retries": 0,
                "eta": None,
                "expires": None,
                "timestamp": arrived,
            },
        ),
        ("task-started", {**common, "timestamp": arrived}),
        (
            "task-succeeded",
            {
                **common,
                "result": repr({"successful": True, "isCached": True, "contacts": contacts}),
                "runtime": runtime,
                "timestamp": arrived + runtime,
            },
        ),
    ]


class _Sender:
    """One process's queue and sending thread for one app."""

    def __init__(self, app: Celery) -> None:
        self.app = app
        self.pending: queue.Queue[_Pop] = queue.Queue(MAX_PENDING)
        self.hostname = producer_hostname()
        self.down = False
        self.thread = threading.Thread(target=self._loop, name="flower-events", daemon=True)
        self.thread.start()
        atexit.register(self.flush, FLUSH_AT_EXIT_S)

    def put(self, pop: _Pop) -> None:
        with contextlib.suppress(queue.Full):  # Flower misses it; the pop itself went out
            self.pending.put_nowait(pop)

    def flush(self, timeout_s: float) -> None:
        """Wait (bounded) until everything queued was sent or dropped."""
        deadline = time.monotonic() + timeout_s
        while self.pending.unfinished_tasks and time.monotonic() < deadline:
            time.sleep(0.02)

    def _loop(self) -> None:
        conn: Any = None
        dispatcher: Any = None
        while True:
            batch = [self.pending.get()]
            while len(batch) < BATCH:
                try:
                    batch.append(self.pending.get_nowait())
                except queue.Empty:
                    break
            try:
                if dispatcher is None:
                    conn = self.app.connection_for_write()
                    dispatcher = self.app.events.Dispatcher(
                        conn, hostname=self.hostname, enabled=True, buffer_while_offline=False
                    )
                for pop in batch:
                    for event_type, fields in events_of(pop, str(uuidlib.uuid4())):
                        dispatcher.send(event_type, **fields)
                self.down = False
            except Exception as exc:  # broker down: drop the batch, reconnect next time
                if not self.down:
                    name = type(exc).__name__
                    log.warning("Flower events of cached call pops dropped (%s)", name)
                self.down = True
                _close(dispatcher, conn)
                conn = dispatcher = None
            finally:
                for _ in batch:
                    self.pending.task_done()


def _close(dispatcher: Any, conn: Any) -> None:
    for thing in (dispatcher, conn):
        with contextlib.suppress(Exception):  # closing a broken connection
            if thing is not None:
                thing.close()


_SENDERS: dict[tuple[int, int], _Sender] = {}
_LOCK = threading.Lock()


def _sender(app: Celery) -> _Sender:
    """This process's sender for ``app`` (a forked gunicorn worker makes its own)."""
    key = (os.getpid(), id(app))
    with _LOCK:
        sender = _SENDERS.get(key)
        if sender is None:
            sender = _SENDERS[key] = _Sender(app)
        return sender
