"""Redaction: the one place that turns text into text fit to store, show or log.

Every path by which text leaves a process goes through a ``Redactor``: the debug trace
(``DebugTrace``), log records and their tracebacks (``contact_lookup.logs``), exception text
that reaches a result or Flower, URLs in error messages (``redact_url``) and the webhook.

What is removed, in this order:

1. every **configured secret value**, whatever its variable is called: the ``token_env`` of
   each connection, every ``*_env`` option of a connection (password_env, client_secret_env,
   ...), and the service's own secrets (``SECRET_SETTINGS``). ``secret_names`` lists the
   variables of a connections file; ``Redactor.from_env`` reads their values;
2. **credential-shaped text** even when its value was never configured (a token pasted into
   the wrong variable, a vendor's refreshed token): ``Authorization:`` header values,
   ``Bearer``/``Basic`` credentials, URL passwords (``scheme://user:PASSWORD@``), secret query
   parameters (``access_token=``, ``BhRestToken=``, ...), and JSON members named like
   secrets (``"refresh_token": "..."``).

A secret shorter than ``MIN_SECRET_LEN`` characters is matched only by shape (rule 2):
replacing a 3-character value everywhere would shred ordinary text.
"""

from __future__ import annotations

import os
import re
import threading
import traceback
from collections.abc import Iterable, Mapping
from typing import Any
from urllib.parse import urlsplit

REDACTED = "***"
MIN_SECRET_LEN = 6

# Environment variables of the service itself that hold secrets (README "Environment").
SECRET_SETTINGS = (
    "RC_VERIFICATION_TOKEN",
    "TOKEN_ENCRYPTION_KEY",
    "REDIS_PASSWORD",
    "FLOWER_BASIC_AUTH",
    "METRICS_BASIC_AUTH",
)
# Backstop by name, for variables no configuration names: the conventional suffixes.
SECRET_SUFFIXES = ("_TOKEN", "_SECRET", "_PASSWORD", "_KEY", "_APIKEY", "_API_KEY")

# Names of fields and parameters that carry credentials (OAuth 2.0 RFC 6749, vendors' APIs).
_SECRET_FIELDS = (
    "access_token",
    "refresh_token",
    "id_token",
    "api_token",
    "apikey",
    "api_key",
    "token",
    "bhresttoken",
    "key",
    "password",
    "passwd",
    "client_secret",
    "secret",
    "code",
    "assertion",
)
_SECRET_WORDS = "|".join(_SECRET_FIELDS)
_PATTERNS: tuple[tuple[re.Pattern[str], str], ...] = (
    # Authorization: <scheme> <credentials>  (HTTP header lines, repr'd header dicts)
    (re.compile(r"(?i)(authorization['\"]?\s*[:=]\s*['\"]?)[^'\"\r\n,}]+"), rf"\1{REDACTED}"),
    (re.compile(r"(?i)\b(bearer|basic)\s+[A-Za-z0-9._~+/=-]{6,}"), rf"\1 {REDACTED}"),
    (re.compile(r"(://[^:/@\s]*:)[^@\s/]+@"), rf"\1{REDACTED}@"),
    (re.compile(rf"(?i)([?&;](?:{_SECRET_WORDS})=)[^&#\s'\"]*"), rf"\1{REDACTED}"),
    (
        re.compile(
            rf"(?i)(['\"](?:{_SECRET_WORDS}|x-api-token|x-api-key)['\"]\s*:\s*['\"])[^'\"]*"
        ),
        rf"\1{REDACTED}",
    ),
)


def secret_names(connections: Iterable[Any]) -> set[str]:
    """Environment variable names that hold a connection's secrets (``token_env``, the OAuth
    client and private-key variables, and every option whose key ends in ``_env``)."""
    names: set[str] = set()
    for conn in connections:
        for attr in ("token_env", "client_id_env", "client_secret_env", "private_key_env"):
            if getattr(conn, attr, None):
                names.add(getattr(conn, attr))
        for key, value in getattr(conn, "options", {}).items():
            if key.endswith("_env") and isinstance(value, str) and value:
                names.add(value)
    return names


class Redactor:
    """Replaces secrets in text. Thread-safe; secrets can be added at any time."""

    def __init__(self, secrets: Iterable[str | None] = ()) -> None:
        self._lock = threading.Lock()
        self._secrets: list[str] = []
        self._pattern: re.Pattern[str] | None = None
        self.add(*secrets)

    @classmethod
    def from_env(cls, names: Iterable[str] = (), env: Mapping[str, str] | None = None) -> Redactor:
        """A redactor for the values of ``names``, the service's secret settings and every
        variable with a secret-like suffix, read from ``env`` (default ``os.environ``)."""
        env = os.environ if env is None else env
        wanted = {*names, *SECRET_SETTINGS}
        wanted |= {n for n in env if n.upper().endswith(SECRET_SUFFIXES)}
        return cls(env.get(n) for n in wanted)

    @property
    def secrets(self) -> list[str]:
        """The secret values known to this redactor (never log this)."""
        return list(self._secrets)

    def add(self, *secrets: str | None) -> None:
        """Also redact these values (None and short values are ignored)."""
        new = [s for s in secrets if s and len(s) >= MIN_SECRET_LEN]
        if not new:
            return
        with self._lock:
            merged = sorted({*self._secrets, *new}, key=len, reverse=True)
            if merged != self._secrets:
                self._secrets = merged
                self._pattern = re.compile("|".join(re.escape(s) for s in merged))

    def discard(self, *secrets: str | None) -> None:
        """Stop redacting these values by value (a rotated-out OAuth token: keeping every one
        ever refreshed would grow the pattern without bound; shapes still catch them)."""
        gone = {s for s in secrets if s}
        with self._lock:
            kept = [s for s in self._secrets if s not in gone]
            if kept != self._secrets:
                self._secrets = kept
                self._pattern = re.compile("|".join(re.escape(s) for s in kept)) if kept else None

    def __call__(self, text: str) -> str:
        """``text`` with every known secret and credential-shaped value replaced."""
        pattern = self._pattern
        if pattern is not None:
            text = pattern.sub(REDACTED, text)
        for shape, replacement in _PATTERNS:
            text = shape.sub(replacement, text)
        return text

    def exception(self, exc: BaseException) -> str:
        """``type: message`` of an exception, redacted (for results and retry state)."""
        return self(f"{type(exc).__name__}: {exc}")

    def traceback(self, exc: BaseException) -> str:
        """The formatted traceback of ``exc``, redacted (exception messages hold secrets as
        often as log messages do: ``UnicodeEncodeError`` repeats the header it failed on)."""
        return self("".join(traceback.format_exception(exc)))


def redact_url(url: str) -> str:
    """The URL with any password replaced, fit for logs and error messages."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", f":{REDACTED}@", 1)
    return parts._replace(netloc=netloc).geturl()


# The process's redactor: logging's filter and exception handling read it; the composition
# root (contact_lookup.compose) adds the secrets of the connections file it loads.
PROCESS = Redactor()
