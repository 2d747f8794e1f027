"""Log output: ``LOG_FORMAT=text`` (the default) or ``json`` lines for log shippers.

Every record of every logger goes through two filters on the one root handler:

- ``RedactingFilter`` removes secrets: the process's redactor
  (contact_lookup.model.redaction.PROCESS: every configured secret value, whatever its
  variable's name, and credential-shaped text) on the message *and* on the traceback of
  ``exc_info`` and ``stack_info``, which repeat exception messages verbatim.
- ``PersonalDataFilter`` keeps contact data out: Celery's "Task ... succeeded in ...s:
  {result}" line loses its result (and the task's args/kwargs), and any phone number left in
  a message is masked to its last 4 digits (``mask_number``). A lookup's result is never
  logged; what a job did is one line of fields (tasks.observe).

JSON lines: ``ts`` (UTC, milliseconds, ``Z``), ``level``, ``logger``, ``process``,
``message``, ``exc`` (the redacted traceback) and, where known, the fields ``task_id``,
``connection``, ``purpose``, ``outcome``, ``errorType``, ``duration_ms``, ``cached``; for the
webhook ``uuid``, ``action``/``actions`` and ``reason``; for the access log ``method``,
``path``, ``status``. Inside a Celery task ``task_id`` is
filled in from the running task. Text lines carry the same timestamp.
"""

from __future__ import annotations

import json
import logging
import re
import sys
import time
from collections.abc import Iterable, Mapping
from typing import Any

from contact_lookup.model.redaction import PROCESS, Redactor

FIELDS = (
    "task_id",
    "connection",
    "purpose",
    "outcome",
    "errorType",
    "duration_ms",
    "cached",
    "reason",
    "uuid",
    "action",
    "actions",
    "method",
    "path",
    "status",
)
WITHHELD = "[withheld]"

# A phone number in free text: an optional +, then 7 to 15 digits, each group separated by at
# most two spaces, dots, dashes or parentheses (E.164 allows 15 digits: ITU-T E.164 section 6).
# Not inside a word, a uuid or a longer digit run; an ISO date (2026-01-31) is left alone.
_NUMBER = re.compile(r"(?<![\w.:/-])\+?\(?\d(?:[\s().-]{0,2}\d){6,14}(?![\w/-])")
_NOT_A_NUMBER = re.compile(r"\d{4}-\d{2}-\d{2}|\d+\.\d+")  # a date, a decimal (durations)


def mask_number(number: object) -> str:
    """A phone number as it may be logged: its last 4 digits only (``***0100``)."""
    digits = re.sub(r"\D", "", str(number or ""))
    return "***" + digits[-4:] if digits else "-"


def mask_numbers(text: str) -> str:
    """``text`` with every phone-number-shaped run masked to its last 4 digits."""

    def repl(m: re.Match[str]) -> str:
        found = m.group(0)
        if _NOT_A_NUMBER.fullmatch(found.strip()):
            return found
        return mask_number(found)

    return _NUMBER.sub(repl, text)


class RedactingFilter(logging.Filter):
    """Redacts a record's message, traceback and stack in place (see the module docstring)."""

    def __init__(self, redactor: Redactor = PROCESS) -> None:
        super().__init__()
        self.redactor = redactor

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        clean = self.redactor(message)
        if clean != message:
            record.msg, record.args = clean, None
        if record.exc_info and record.exc_info[1] is not None and not record.exc_text:
            # Formatters reuse exc_text when it is set: format the traceback once, redacted.
            record.exc_text = self.redactor(logging.Formatter().formatException(record.exc_info))
        elif record.exc_text:
            record.exc_text = self.redactor(record.exc_text)
        if record.stack_info:
            record.stack_info = self.redactor(record.stack_info)
        return True


class PersonalDataFilter(logging.Filter):
    """No result payloads, no task arguments, no full phone numbers in a record."""

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args
        if isinstance(args, Mapping) and "return_value" in args:
            # celery.app.trace's LOG_SUCCESS: 'Task %(name)s[%(id)s] succeeded in
            # %(runtime)ss: %(return_value)s', with args and kwargs beside it.
            record.args = {
                **args,
                "return_value": WITHHELD,
                "args": WITHHELD,
                "kwargs": WITHHELD,
            }
        message = record.getMessage()
        masked = mask_numbers(message)
        if masked != message:
            record.msg, record.args = masked, None
        if record.exc_text:
            record.exc_text = mask_numbers(record.exc_text)
        return True


def timestamp(created: float) -> str:
    """``created`` as UTC ISO 8601 with milliseconds: ``2026-11-30T01:02:03.456Z``."""
    millis = int(created % 1 * 1000)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(created)) + f".{millis:03d}Z"


def _current_task_id() -> str | None:
    celery_state = sys.modules.get("celery._state")
    if celery_state is None:
        return None
    task = celery_state.get_current_task()
    request = getattr(task, "request", None) if task is not None else None
    task_id = getattr(request, "id", None)
    return task_id if isinstance(task_id, str) else None


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        data: dict[str, Any] = {
            "ts": timestamp(record.created),
            "level": record.levelname,
            "logger": record.name,
            "process": record.processName if record.processName != "MainProcess" else None,
            "message": record.getMessage(),
        }
        if data["process"] is None:
            del data["process"]
        for name in FIELDS:
            value = record.__dict__.get(name)
            if value is not None:
                data[name] = value
        if "task_id" not in data:
            task_id = _current_task_id()
            if task_id:
                data["task_id"] = task_id
        if record.exc_info or record.exc_text:
            data["exc"] = record.exc_text or self.formatException(record.exc_info)  # type: ignore[arg-type]
        return json.dumps(data, default=str)


class TextFormatter(logging.Formatter):
    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:
        return timestamp(record.created)

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")


def make_handler(log_format: str, stream: Any = None) -> logging.Handler:
    """A stream handler in ``log_format`` behind both filters (for any logger)."""
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter() if log_format == "json" else TextFormatter())
    handler.addFilter(RedactingFilter())
    handler.addFilter(PersonalDataFilter())
    return handler


def configure_logging(
    log_format: str, level: int = logging.INFO, secret_names: Iterable[str] = ()
) -> None:
    """One handler on the root logger, text or JSON, behind the redacting filters.

    ``secret_names``: environment variables whose values must never be logged (the
    connections file's, when known); the service's own secret settings and variables with a
    secret-like suffix are always included (redaction.Redactor.from_env).
    """
    PROCESS.add(*Redactor.from_env(secret_names).secrets)
    root = logging.getLogger()
    root.handlers[:] = [make_handler(log_format)]
    root.setLevel(level)
    logging.captureWarnings(True)  # warnings (Celery's running-as-root one) become records
