"""What a worker tells operators about each finished ``find_contact`` job: metrics and one
log line, from Celery's signals, so the task itself stays free of bookkeeping.

- ``task_success``: ``contact_lookup_lookups_total`` (and failures by ``errorType``), and for
  a call pop ``contact_lookup_call_pop_seconds{path="worker"}`` from the moment the job was
  sent. A call pop's message expires ``CALL_POP_DEADLINE`` after it is sent
  (tasks.enqueue), so sent time = expiry - deadline.
- one INFO line per job with fields (``task_id``, ``connection``, ``purpose``, ``outcome``,
  ``errorType``, ``cached``, ``duration_ms``) and the number masked to its last 4 digits,
  never the result. Celery's own "succeeded ... {result}" line is silenced (contact_lookup.logs).
"""

from __future__ import annotations

import logging
import time
from datetime import datetime
from typing import Any

from celery import signals

from contact_lookup import metrics
from contact_lookup.logs import mask_number

log = logging.getLogger("contact_lookup.task")

_started: dict[str, float] = {}


def _sent_at(request: Any, deadline_s: float) -> float | None:
    expires = getattr(request, "expires", None)
    if isinstance(expires, str):
        try:
            return datetime.fromisoformat(expires).timestamp() - deadline_s
        except ValueError:
            return None
    if isinstance(expires, datetime):
        return expires.timestamp() - deadline_s
    return None


@signals.task_prerun.connect
def _on_prerun(task_id: str | None = None, task: Any = None, **_: Any) -> None:
    if task_id and getattr(task, "name", None) == "find_contact":
        _started[task_id] = time.monotonic()


@signals.task_success.connect
def _on_success(sender: Any = None, result: Any = None, **_: Any) -> None:
    if getattr(sender, "name", None) != "find_contact" or not isinstance(result, dict):
        return
    request = sender.request
    kwargs = request.kwargs or {}
    purpose, connection = kwargs.get("purpose", "call_pop"), kwargs.get("connection")
    label = metrics.count_lookup(purpose, connection, result)
    if purpose == "call_pop" and kwargs.get("callPop"):
        sent = _sent_at(request, float(sender.app.settings.call_pop_deadline_s))
        if sent is not None:
            metrics.observe_call_pop("worker", time.time() - sent)
    started = _started.pop(request.id, None)
    duration_ms = None if started is None else round((time.monotonic() - started) * 1000, 1)
    tracking = result.get("extraDataTracking") or {}
    log.info(
        "find_contact %s: %s for %s on %s",
        request.id,
        label,
        mask_number(kwargs.get("phoneNumber")),
        connection,
        extra={
            "task_id": request.id,
            "connection": connection,
            "purpose": purpose,
            "outcome": label,
            "errorType": tracking.get("errorType"),
            "cached": bool(tracking.get("isCached")),
            "duration_ms": duration_ms,
        },
    )


@signals.task_postrun.connect
def _on_postrun(task_id: str | None = None, **_: Any) -> None:
    if task_id:
        _started.pop(task_id, None)
