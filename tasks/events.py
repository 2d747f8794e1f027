"""Task events as Flower and other monitors see them: redacted, failures shown as failures.

Celery's worker sends one event per task transition (``task-received``, ``-started``,
``-retried``, ``-succeeded``, ``-failed``; "Event Reference", Celery user guide,
https://docs.celeryq.dev/en/stable/userguide/monitoring.html#event-reference). Flower builds
its task pages, its Failed tab and its ``flower_events_total{type="task-failed"}`` metric from
them. This dispatcher (``tasks.celery_app.create_app`` installs it) changes three things:

1. **A lookup that ends ``successful: false`` is a failed task to the operator.** The task
   returns the spec's result object (docs/interface.md section 8), which the result backend stores
   as SUCCESS for the caller; its ``task-succeeded`` event is sent as ``task-failed`` with
   ``exception`` ``LookupFailed('<errorType>: <message>')`` and the result kept in ``result``.
2. **A rate-limit deferral is not an error**: a ``task-retried`` event whose reason is a
   ``Deferred`` carries no traceback.
3. **No secret leaves in an event**: ``exception``, ``traceback`` and ``result`` go through
   the process's redactor (every configured secret value and credential-shaped text).

Pure functions (``rewrite``) do the work; the class only calls them.

4. **A stable sender name.** Celery names a dispatcher created without a hostname (the one
   ``send_task`` uses for ``task-sent``) ``gen<PID>@<host>``
   (celery/utils/nodenames.py, ``anon_nodename``); Flower's ``/metrics`` labels its series by
   that ``worker``, so every producer process (each gunicorn worker, each ``replay`` or
   ``lookup`` run) made new series without bound. Here such a dispatcher is named after the
   process's role instead: ``webhook@<host>``, ``relookup@<host>``, ``replay@<host>``,
   ``lookup@<host>`` (``name_producer``, called by the command line), ``producer@<host>``
   when nothing named it; in a worker, the worker's own node name (its retries' task-sent).
"""

from __future__ import annotations

import ast
import re
import socket
from typing import Any

from celery.events.dispatcher import EventDispatcher

from contact_lookup.model.redaction import PROCESS

# How a failed lookup's dict looks in Celery's repr of it (the key is unique to the top level).
FAILED_MARK = "'successful': False"
_TEXT_FIELDS = ("exception", "traceback", "result")
_ERROR_TYPE = re.compile(r"'errorType': '([A-Za-z0-9_]+)'")
_MESSAGE = re.compile(r"'message': ('(?:[^'\\]|\\.)*'|\"(?:[^\"\\]|\\.)*\")")


def failed_lookup(result_repr: str) -> tuple[str, str] | None:
    """(errorType, message) when a ``task-succeeded`` event's ``result`` (Celery's
    ``saferepr`` of the returned dict) is a failed lookup, else None."""
    if FAILED_MARK not in result_repr:
        return None
    error = _ERROR_TYPE.search(result_repr)
    message = _MESSAGE.search(result_repr)
    text = ""
    if message:
        try:
            text = str(ast.literal_eval(message.group(1)))
        except (ValueError, SyntaxError):
            text = message.group(1)
    return (error.group(1) if error else "LookupFailed", text)


def rewrite(event_type: str, fields: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """The event to send instead of (``event_type``, ``fields``): see the module docstring."""
    fields = dict(fields)
    if event_type == "task-succeeded" and isinstance(fields.get("result"), str):
        failed = failed_lookup(fields["result"])
        if failed is not None:
            error_type, message = failed
            event_type = "task-failed"
            fields["exception"] = f"LookupFailed({f'{error_type}: {message}'!r})"
            fields["traceback"] = ""
            fields["errorType"] = error_type
    if event_type == "task-retried" and str(fields.get("exception", "")).startswith("Deferred("):
        fields["traceback"] = ""
    for name in _TEXT_FIELDS:
        if isinstance(fields.get(name), str):
            fields[name] = PROCESS(fields[name])
    return event_type, fields


_ROLE = ["producer"]


def name_producer(role: str) -> None:
    """Name this process's anonymous event dispatchers ``<role>@<host>`` (or ``role`` itself
    when it is already a node name such as a worker's ``name@host``)."""
    _ROLE[0] = role if re.fullmatch(r"[\w.-]+(@[\w.-]+)?", role) else "producer"


def producer_hostname() -> str:
    role = _ROLE[0]
    return role if "@" in role else f"{role}@{socket.gethostname()}"


class LookupEventDispatcher(EventDispatcher):
    """Celery's dispatcher with ``rewrite`` applied to every event it sends, named by
    ``producer_hostname`` when its creator gave no hostname."""

    def __init__(self, connection: Any = None, hostname: str | None = None, *a: Any, **kw: Any):
        super().__init__(connection, hostname or producer_hostname(), *a, **kw)

    def send(self, type: str, *args: Any, **fields: Any) -> Any:
        type, fields = rewrite(type, fields)
        return super().send(type, *args, **fields)
