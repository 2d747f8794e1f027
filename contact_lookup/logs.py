"""Log output: ``LOG_FORMAT=text`` (the default) or ``json`` lines for log shippers.

Every record goes through a redacting filter too: a secret is never meant to reach a log
call, but the filter is the backstop (CRM tokens from the worker's environment, passwords in
Redis URLs).
"""

from __future__ import annotations

import json
import logging
import os
import re
import time

_URL_PASSWORD = re.compile(r"(://[^:/@\s]*:)[^@\s]+@")


class RedactingFilter(logging.Filter):
    def __init__(self, secrets: list[str]) -> None:
        super().__init__()
        self.secrets = sorted({s for s in secrets if len(s) >= 6}, key=len, reverse=True)

    def scrub(self, text: str) -> str:
        text = _URL_PASSWORD.sub(r"\1***@", text)
        for secret in self.secrets:
            text = text.replace(secret, "***")
        return text

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        clean = self.scrub(message)
        if clean != message:
            record.msg, record.args = clean, None
        return True


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        data = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + "Z",
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.exc_info:
            data["exc"] = self.formatException(record.exc_info)
        return json.dumps(data)


def secrets_from_env() -> list[str]:
    """Values of variables that hold secrets by this project's naming conventions."""
    names = [n for n in os.environ if n.endswith(("_TOKEN", "_SECRET", "_PASSWORD", "_KEY"))]
    return [os.environ[n] for n in names]


def configure_logging(log_format: str, level: int = logging.INFO) -> None:
    handler = logging.StreamHandler()
    handler.setFormatter(
        JsonFormatter()
        if log_format == "json"
        else logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s")
    )
    handler.addFilter(RedactingFilter(secrets_from_env()))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
