"""Log output: ``LOG_FORMAT=text`` (the default) or ``json`` lines for log shippers.

Every record goes through a redacting filter too: a secret is never meant to reach a log
call, but the filter is the backstop. It uses the process's redactor
(contact_lookup.model.redaction.PROCESS: every configured secret value, whatever its
variable's name, and credential-shaped text) on the message *and* on the traceback of
``exc_info`` and ``stack_info``, which repeat exception messages verbatim.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterable

from contact_lookup.model.redaction import PROCESS, Redactor


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


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        data = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + "Z",
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.exc_info or record.exc_text:
            data["exc"] = record.exc_text or self.formatException(record.exc_info)  # type: ignore[arg-type]
        return json.dumps(data)


def configure_logging(
    log_format: str, level: int = logging.INFO, secret_names: Iterable[str] = ()
) -> None:
    """One handler on the root logger, text or JSON, behind the redacting filter.

    ``secret_names``: environment variables whose values must never be logged (the
    connections file's, when known); the service's own secret settings and variables with a
    secret-like suffix are always included (redaction.Redactor.from_env).
    """
    PROCESS.add(*Redactor.from_env(secret_names).secrets)
    handler = logging.StreamHandler()
    handler.setFormatter(
        JsonFormatter()
        if log_format == "json"
        else logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s")
    )
    handler.addFilter(RedactingFilter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
