"""The project's error tree: one root, split into what a retry can fix and what it cannot.

    ContactLookupError
    ├── ConfigError               bad settings, connections file or missing secret (start-up)
    ├── InvalidInput              a request we can never answer, whatever the CRM does
    │   └── InvalidPhoneNumber    does not parse, or is not a valid number
    └── CRMError                  anything the CRM said or failed to say
        ├── TransientCRMError     retry later: the same request may succeed
        │   ├── RateLimited       429 / vendor signal; carries the wait the CRM asked for
        │   └── CRMUnavailable    5xx, timeout, refused connection, malformed or truncated body
        └── PermanentCRMError     retrying cannot help: the user must act
            ├── AuthRejected      credential wrong, expired or revoked: reconnect the CRM
            │   └── AuthRevoked   the stored OAuth grant is gone: run `contact-lookup auth connect`
            └── BadQuery          the CRM refused the query itself (4xx other than auth/limit)

Connectors translate vendor errors into this tree once, at their boundary
(``raise RateLimited(...) from exc``); tasks and the service only ever see these types.
Every error carries a user-facing message saying what happened and what to do, so that a
failure always becomes ``successful: false`` and never an empty success.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class RateLimitState:
    """What a CRM reported about its rate limit on one response (None where it said nothing).

    ``reset`` is normalised to Unix epoch seconds whatever the vendor's own unit.
    """

    remaining: int | None = None
    amount: int | None = None
    reset: float | None = None

    def tracking(self) -> dict[str, Any]:
        """The ``extraDataTracking`` fields of docs/interface.md section 5."""
        out: dict[str, Any] = {}
        if self.remaining is not None:
            out["ratelimitRemaining"] = self.remaining
        if self.amount is not None:
            out["ratelimitAmount"] = self.amount
        if self.reset is not None:
            out["ratelimitReset"] = int(self.reset)
        return out


class ContactLookupError(Exception):
    """Root of every error this project raises on purpose."""

    message_type = "danger"

    def __init__(self, message: str, *, hint: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def user_message(self) -> str:
        """One sentence for the UI: what happened, then what to do."""
        return f"{self.message} {self.hint}".strip()


class ConfigError(ContactLookupError):
    """Settings, connections file or secret missing or invalid; names what is wrong."""


class InvalidInput(ContactLookupError):
    message_type = "warning"


class InvalidPhoneNumber(InvalidInput):
    def __init__(self, number: object, reason: str = "is not a valid phone number") -> None:
        super().__init__(
            f"{number!r} {reason}.",
            hint="Check the number; no CRM lookup was made.",
        )
        self.number = number


class CRMError(ContactLookupError):
    """The CRM failed us. ``status_code`` is the HTTP status where there was one."""

    def __init__(
        self,
        message: str,
        *,
        hint: str = "",
        status_code: int | None = None,
        rate_limit: RateLimitState | None = None,
    ) -> None:
        super().__init__(message, hint=hint)
        self.status_code = status_code
        self.rate_limit = rate_limit


class TransientCRMError(CRMError):
    """Retrying later may succeed."""


class RateLimited(TransientCRMError):
    message_type = "warning"

    def __init__(
        self,
        message: str = "The CRM is rate limiting requests.",
        *,
        retry_after_s: float | None = None,
        status_code: int | None = 429,
        rate_limit: RateLimitState | None = None,
    ) -> None:
        super().__init__(
            message,
            hint="Wait for the CRM's rate limit to reset, then try again.",
            status_code=status_code,
            rate_limit=rate_limit,
        )
        self.retry_after_s = retry_after_s


class CRMUnavailable(TransientCRMError):
    def __init__(self, message: str, *, status_code: int | None = None) -> None:
        super().__init__(
            message,
            hint="The CRM could not be reached or answered badly; try again shortly.",
            status_code=status_code,
        )


class PermanentCRMError(CRMError):
    """Retrying cannot help: the user or an administrator must act."""


class AuthRejected(PermanentCRMError):
    def __init__(
        self, message: str = "The CRM rejected our credentials.", *, status_code: int | None = 401
    ) -> None:
        super().__init__(
            message,
            hint="Reconnect the CRM (its token is wrong, expired or revoked).",
            status_code=status_code,
        )


class AuthRevoked(AuthRejected):
    """The connection's OAuth grant was revoked or has expired (the token endpoint answered
    ``invalid_grant``, RFC 6749 section 5.2), or no tokens are stored: only an operator can
    fix it, by connecting the CRM again. Lookups fail fast until then."""

    def __init__(self, connection: str, reason: str = "was revoked or has expired") -> None:
        CRMError.__init__(
            self,
            f"The CRM authorisation of connection {connection!r} {reason}.",
            hint=f"Run `contact-lookup auth connect {connection}` (or `auth seed`) to "
            "connect it again.",
            status_code=None,
        )
        self.connection = connection


class BadQuery(PermanentCRMError):
    def __init__(self, message: str, *, status_code: int | None = 400) -> None:
        super().__init__(
            message,
            hint="The CRM refused this search; check the connection's phone formats.",
            status_code=status_code,
        )
