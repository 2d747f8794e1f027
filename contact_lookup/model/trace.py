"""The debug trace (INTERFACE.md section 5): one entry per CRM request, secrets redacted."""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

# LookupRequest parameters that carry credentials in some vendors' URLs.
_SECRET_PARAMS = re.compile(
    r"(?i)([?&](?:access_token|api_token|apikey|api_key|token|bhresttoken|key|password|"
    r"client_secret|refresh_token)=)[^&#]*"
)
REDACTED = "***"


class DebugTrace:
    """Collects request records; knows the secrets it must never write out."""

    def __init__(self, secrets: Iterable[str | None] = ()) -> None:
        self.entries: list[dict[str, Any]] = []
        self._secrets = sorted({s for s in secrets if s}, key=len, reverse=True)

    def add_secret(self, secret: str | None) -> None:
        if secret and secret not in self._secrets:
            self._secrets.append(secret)
            self._secrets.sort(key=len, reverse=True)

    def redact(self, text: str) -> str:
        text = _SECRET_PARAMS.sub(rf"\1{REDACTED}", text)
        for secret in self._secrets:
            text = text.replace(secret, REDACTED)
        return text

    def note(self, event: str, **data: Any) -> None:
        """A non-request entry: ``{"event": event, **data}`` (e.g. records dropped as no match)."""
        self.entries.append({"event": event, **data})

    def record(self, method: str, url: str, status: int | None, duration_ms: float) -> None:
        self.entries.append(
            {
                "method": method,
                "url": self.redact(url),
                "status": status,
                "durationMs": round(duration_ms, 1),
            }
        )
