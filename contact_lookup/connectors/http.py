"""The HTTP boundary shared by every REST connector: requests in, our error tree out.

``request`` times every call into the debug trace (redacted), bounds the body's size and the
total read time (a slow-drip server must not hold a worker thread past the timeout), and maps
transport failures to ``CRMUnavailable``. ``check`` maps HTTP statuses the way most vendors
mean them; a vendor with its own signals (Salesforce's 403 REQUEST_LIMIT_EXCEEDED, Bullhorn's
expired session) overrides it.
"""

from __future__ import annotations

import email.utils
import json
import time
from typing import Any
from urllib.parse import urlsplit

import requests
import urllib3

from contact_lookup import metrics
from contact_lookup.connectors.base import Connector
from contact_lookup.model.config import Connection
from contact_lookup.model.errors import (
    AuthRejected,
    BadQuery,
    ConfigError,
    CRMUnavailable,
    RateLimited,
    RateLimitState,
)

MAX_BODY_BYTES = 8 * 1024 * 1024


def retry_after_seconds(value: str | None, now: float | None = None) -> float | None:
    """``Retry-After`` as seconds to wait: delta-seconds or an HTTP date; None if absent/bad."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


def header_int(headers: Any, name: str) -> int | None:
    try:
        return int(float(headers[name]))
    except (KeyError, TypeError, ValueError):
        return None


def read_rate_limit(
    headers: Any,
    limit: str | None,
    remaining: str | None,
    reset: str | None,
    reset_is_delta: bool = False,
    now: float | None = None,
) -> RateLimitState | None:
    """A ``RateLimitState`` from the named headers (any may be None: not sent), or None when
    none is present. ``reset_is_delta``: the reset header is seconds left (IETF RateLimit
    draft, Pipedrive, Bullhorn), made epoch seconds; otherwise it is epoch seconds."""
    reset_at: float | None = header_int(headers, reset) if reset else None
    if reset_at is not None and reset_is_delta:
        reset_at = (time.time() if now is None else now) + reset_at
    state = RateLimitState(
        remaining=header_int(headers, remaining) if remaining else None,
        amount=header_int(headers, limit) if limit else None,
        reset=reset_at,
    )
    return state if state != RateLimitState() else None


class HttpConnector(Connector):
    """A connector over a REST API at ``connection.base_url``, authenticated by its secret."""

    @classmethod
    def check_connection(cls, connection: Connection) -> None:
        """At load, not at the first lookup: a missing ``token_env`` or ``base_url``, and a
        ``base_url`` requests cannot send to (no scheme: every lookup would be retried as
        "the CRM could not be reached")."""
        where = f"connection {connection.name!r}: crm {connection.crm}"
        if not connection.uses_token_store and not connection.token_env:
            raise ConfigError(f"{where} needs token_env (the variable holding its token)")
        url = connection.base_url
        if not url:
            raise ConfigError(f"{where} needs base_url")
        parts = urlsplit(url)
        if parts.scheme not in ("https", "http") or not parts.netloc:
            raise ConfigError(
                f"connection {connection.name!r}: base_url {url!r} must start with https:// "
                "(or http://) and name a host"
            )

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if not self.secret or not self.connection.base_url:
            raise ConfigError(
                f"connection {self.connection.name!r}: crm {self.connection.crm} needs "
                "base_url and token_env"
            )

    def int_option(self, key: str, default: int, maximum: int) -> int:
        """A whole-number connector option from 1 to ``maximum`` (e.g. ``page_size``)."""
        value = self.connection.options.get(key, default)
        if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= maximum:
            raise ConfigError(
                f"connection {self.connection.name!r}: {key} must be an integer from 1 to {maximum}"
            )
        return value

    def url(self, path: str) -> str:
        if path.startswith(("http://", "https://")):
            return path
        return (self.connection.base_url or "").rstrip("/") + "/" + path.lstrip("/")

    def request(self, method: str, path: str, **kwargs: Any) -> requests.Response:
        """One HTTP request with timeouts; the whole body read within ``timeout_s``.

        Paid before it is sent (``self.budget.take()``: RateLimited when the shared budget
        cannot cover it), and what the response says of the vendor's limit is reported to
        the budget (``observe``) so every worker follows the vendor's own figures.
        """
        url = self.url(path)
        self.budget.take(1)
        started = time.monotonic()
        status: int | None = None
        try:
            resp = self.http_session.request(
                method, url, timeout=self.timeout_s, stream=True, **kwargs
            )
            status = resp.status_code
            resp._content = self._read_body(resp, started)
            state = self.rate_limit_state(resp)
            if state is not None or resp.status_code < 300:
                # A success without figures says the vendor no longer announces any.
                self.budget.observe(state)
            return resp
        except (UnicodeEncodeError, requests.exceptions.InvalidHeader):
            # A secret unfit for a header (typographic quotes, a newline): both errors quote
            # the whole header value, token included, so neither is chained or kept.
            raise ConfigError(
                f"connection {self.connection.name!r}: its secret cannot be sent in an HTTP "
                "header (non-ASCII or control characters); set the variable again "
                "(contact-lookup check names it)"
            ) from None
        except requests.Timeout as exc:
            raise CRMUnavailable(f"The CRM did not answer within {self.timeout_s:g} s.") from exc
        except requests.RequestException as exc:
            raise CRMUnavailable(f"The CRM could not be reached ({type(exc).__name__}).") from exc
        finally:
            elapsed = time.monotonic() - started
            metrics.observe_crm_request(self.connection.name, status, elapsed)
            if self.trace.keep:  # a debug lookup's trace: the URL as sent, redacted
                full_url = requests.Request(method, url, params=kwargs.get("params")).prepare().url
                self.trace.record(method, full_url or url, status, elapsed * 1000)

    def _read_body(self, resp: requests.Response, started: float) -> bytes:
        # read1 returns whatever has arrived (at most 64 KiB), so the deadline is checked
        # after every trickle: a server dripping a byte at a time cannot hold the thread past
        # timeout_s, as it could with reads that wait for whole chunks.
        chunks, size = [], 0
        try:
            while True:
                chunk = resp.raw.read1(64 * 1024, decode_content=True)
                if not chunk:
                    break
                size += len(chunk)
                if size > MAX_BODY_BYTES:
                    raise CRMUnavailable(
                        "The CRM's response was too large to be a search result.",
                        status_code=resp.status_code,
                    )
                if time.monotonic() - started > self.timeout_s:
                    raise CRMUnavailable(
                        f"The CRM's response took over {self.timeout_s:g} s.",
                        status_code=resp.status_code,
                    )
                chunks.append(chunk)
        except (OSError, urllib3.exceptions.HTTPError) as exc:
            # A connection cut mid-body (truncated response) or a read timeout.
            raise CRMUnavailable(
                "The CRM's response was cut off.", status_code=resp.status_code
            ) from exc
        finally:
            resp.close()
        return b"".join(chunks)

    # The vendor's rate-limit headers (limit, remaining, reset; None: not sent) and whether
    # its reset is epoch seconds or seconds left in the window. A vendor overrides these.
    rate_limit_headers: tuple[str | None, str | None, str | None] = (
        "X-RateLimit-Limit",
        "X-RateLimit-Remaining",
        "X-RateLimit-Reset",
    )
    rate_limit_reset_is_delta: bool = False

    def rate_limit_state(self, resp: requests.Response) -> RateLimitState | None:
        """The vendor's rate-limit headers, as ``rate_limit_headers`` names them; a reset
        given as seconds left (``rate_limit_reset_is_delta``) is made epoch seconds."""
        return read_rate_limit(
            resp.headers, *self.rate_limit_headers, self.rate_limit_reset_is_delta
        )

    retry_after_header = "Retry-After"  # RFC 9110 section 10.2.3

    def retry_after(self, resp: requests.Response) -> float | None:
        """How long the vendor asks us to wait after a rate-limit answer: its Retry-After
        header, else until the reset its rate-limit headers announce."""
        wait = retry_after_seconds(resp.headers.get(self.retry_after_header))
        if wait is None:
            state = self.rate_limit_state(resp)
            if state and state.reset:
                wait = max(0.0, state.reset - time.time())
        return wait

    def check(self, resp: requests.Response) -> None:
        """Raise our error for a failed response; return for a 2xx."""
        code = resp.status_code
        if code < 300:
            return
        if code == 429:
            raise RateLimited(
                retry_after_s=self.retry_after(resp),
                status_code=code,
                rate_limit=self.rate_limit_state(resp),
            )
        if code in (401, 403):
            raise AuthRejected(status_code=code)
        if code >= 500:
            raise CRMUnavailable(f"The CRM answered HTTP {code}.", status_code=code)
        raise BadQuery(f"The CRM refused the search (HTTP {code}).", status_code=code)

    def json_body(self, resp: requests.Response) -> Any:
        """The parsed JSON body; a malformed or truncated one means the CRM is not healthy."""
        try:
            return json.loads(resp.content)
        except (ValueError, UnicodeDecodeError) as exc:
            raise CRMUnavailable(
                "The CRM answered with a malformed body.", status_code=resp.status_code
            ) from exc

    def request_json(self, path: str, **kwargs: Any) -> tuple[Any, requests.Response]:
        """request + check + json_body, the common case."""
        resp = self.request(kwargs.pop("method", "GET"), path, **kwargs)
        self.check(resp)
        return self.json_body(resp), resp
