"""The debug trace (docs/interface.md, "debugTrace"): one entry per CRM request, redacted."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from contact_lookup.model.redaction import PROCESS, Redactor


class DebugTrace:
    """Collects request records; knows the secrets it must never write out.

    Each entry: ``{"method": str, "url": str (redacted), "status": int | None,
    "durationMs": float}``. Redaction: this lookup's own secrets (``add_secret``), the
    process's configured secrets, and every credential-shaped value
    (contact_lookup.model.redaction).
    """

    def __init__(self, secrets: Iterable[str | None] = (), *, keep: bool = True) -> None:
        """``keep=False``: a trace nobody reads (a lookup without ``debug``); it records
        nothing, so a request pays for no URL rendering or redaction."""
        self.entries: list[dict[str, Any]] = []
        self.keep = keep
        self._redactor = Redactor(secrets)

    def add_secret(self, secret: str | None) -> None:
        self._redactor.add(secret)

    def redact(self, text: str) -> str:
        return PROCESS(self._redactor(text))

    def note(self, event: str, **data: Any) -> None:
        """A non-request entry: ``{"event": event, **data}`` (e.g. records dropped as no match)."""
        if self.keep:
            self.entries.append({"event": event, **data})

    def record(self, method: str, url: str, status: int | None, duration_ms: float) -> None:
        if not self.keep:
            return
        self.entries.append(
            {
                "method": method,
                "url": self.redact(url),
                "status": status,
                "durationMs": round(duration_ms, 1),
            }
        )
