"""The token endpoint client (RFC 6749 section 4.1.3 authorization code, section 6 refresh,
RFC 7523 JWT bearer) with each vendor's client authentication (``vendors.py``).

Answers are mapped once, here:

- 200 with ``access_token`` -> ``TokenSet`` (``expires_in`` seconds, else the vendor's
  default lifetime; ``refresh_token`` only when the vendor sent one; the API host member).
- ``{"error": "invalid_grant"}`` (RFC 6749 section 5.2: the refresh token or code is
  invalid, expired, revoked or already used) and HubSpot's ``BAD_REFRESH_TOKEN`` ->
  ``InvalidGrant``: the caller re-reads the store, then marks the grant revoked.
- 429 -> ``RateLimited``; 5xx, timeouts, refused connections, malformed bodies ->
  ``CRMUnavailable``. Both are transient: a busy token endpoint never revokes a connection.
- Any other refusal (``invalid_client``, ``unauthorized_client``, ...) -> ``AuthRejected``:
  the client configuration is wrong and an operator must fix it.

No token, secret or request body ever appears in an exception raised here (``from None``).
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import requests

from contact_lookup.auth import vendors
from contact_lookup.model.config import Connection
from contact_lookup.model.errors import AuthRejected, CRMUnavailable, RateLimited
from contact_lookup.model.redaction import PROCESS

JWT_BEARER = "urn:ietf:params:oauth:grant-type:jwt-bearer"
# Salesforce: "exp ... must be within 3 minutes"; a shorter assertion is no less valid.
JWT_ASSERTION_LIFETIME_S = 180


class InvalidGrant(Exception):
    """The token endpoint refused the grant itself (revoked, expired or already used)."""


@dataclass(frozen=True)
class TokenSet:
    """One token answer. ``expires_at`` epoch seconds; ``lifetime_s`` the seconds it was
    issued for; ``refresh_token`` None when the answer carried none (keep the old one)."""

    access_token: str = field(repr=False)
    refresh_token: str | None = field(default=None, repr=False)
    expires_at: float = 0.0
    lifetime_s: float = 0.0
    base_url: str | None = None
    scope: str | None = None


@dataclass(frozen=True)
class ClientCredentials:
    client_id: str
    client_secret: str | None = field(default=None, repr=False)
    private_key: str | None = field(default=None, repr=False)

    @classmethod
    def of(cls, connection: Connection, env: Mapping[str, str] | None = None) -> ClientCredentials:
        """The connection's client credentials from the environment (ConfigError if unset)."""
        client_id = connection.env_secret(connection.client_id_env, "client_id_env", env)
        if connection.auth == "jwt-bearer":
            if connection.private_key_file is not None:
                try:
                    key = connection.private_key_file.read_text(encoding="utf-8")
                except OSError as exc:
                    from contact_lookup.model.errors import ConfigError

                    raise ConfigError(
                        f"connection {connection.name!r}: private_key_file cannot be read "
                        f"({type(exc).__name__})"
                    ) from None
            else:
                key = connection.env_secret(connection.private_key_env, "private_key_env", env)
            PROCESS.add(key)
            return cls(client_id, private_key=key)
        secret = connection.env_secret(connection.client_secret_env, "client_secret_env", env)
        PROCESS.add(secret)
        return cls(client_id, client_secret=secret)


class TokenEndpoint:
    """Calls one connection's token endpoint. ``timeout_s`` bounds each call."""

    def __init__(
        self,
        connection: Connection,
        client: ClientCredentials,
        *,
        timeout_s: float = 10.0,
        session: requests.Session | None = None,
    ) -> None:
        self.connection = connection
        self.client = client
        self.vendor = vendors.vendor(connection)
        self.url = vendors.token_url(connection)
        self.timeout_s = timeout_s
        self.session = session or requests.Session()
        self.session.trust_env = False
        if connection.proxy:
            self.session.proxies = {"http": connection.proxy, "https": connection.proxy}

    # ----- grants ------------------------------------------------------------------------------
    def refresh(self, refresh_token: str) -> TokenSet:
        """The refresh-token grant (RFC 6749 section 6)."""
        return self._post({"grant_type": "refresh_token", "refresh_token": refresh_token})

    def exchange_code(self, code: str, redirect_uri: str) -> TokenSet:
        """The authorization-code grant (RFC 6749 section 4.1.3)."""
        return self._post(
            {"grant_type": "authorization_code", "code": code, "redirect_uri": redirect_uri}
        )

    def jwt_bearer(self, now: float | None = None) -> TokenSet:
        """Salesforce's OAuth 2.0 JWT Bearer flow (RFC 7523): an RS256 assertion with
        ``iss`` = client id, ``sub`` = username, ``aud`` = the login host, ``exp`` within 3
        minutes; no client secret and no refresh token."""
        import jwt  # PyJWT: only this grant needs it

        now = time.time() if now is None else now
        host = vendors.oauth_host(self.connection)
        aud = "https://test.salesforce.com" if "test." in host else "https://login.salesforce.com"
        claims = {
            "iss": self.client.client_id,
            "sub": self.connection.username,
            "aud": aud,
            "exp": int(now) + JWT_ASSERTION_LIFETIME_S,
            "jti": uuid.uuid4().hex,
        }
        try:
            assertion = jwt.encode(claims, self.client.private_key or "", algorithm="RS256")
        except (ValueError, TypeError, jwt.PyJWTError):
            from contact_lookup.model.errors import ConfigError

            raise ConfigError(
                f"connection {self.connection.name!r}: the private key cannot sign an RS256 "
                "assertion (a PEM RSA private key is needed)"
            ) from None
        PROCESS.add(assertion)
        return self._post({"grant_type": JWT_BEARER, "assertion": assertion}, client_auth=False)

    # ----- the HTTP call -----------------------------------------------------------------------
    def _post(self, form: dict[str, str], *, client_auth: bool = True) -> TokenSet:
        data = dict(form)
        params: dict[str, str] = {}
        auth: tuple[str, str] | None = None
        if client_auth:
            secret = self.client.client_secret or ""
            if self.vendor.client_auth == "basic":
                auth = (self.client.client_id, secret)
            elif self.vendor.client_auth == "query":
                params = {**data, "client_id": self.client.client_id, "client_secret": secret}
                data = {}
            else:
                data.update(client_id=self.client.client_id, client_secret=secret)
        if self.connection.scopes and form["grant_type"] == "authorization_code":
            data["scope"] = " ".join(self.connection.scopes)
        started = time.time()
        try:
            resp = self.session.post(
                self.url,
                data=data or None,
                params=params or None,
                auth=auth,
                headers={"Accept": "application/json"},
                timeout=self.timeout_s,
            )
        except requests.Timeout:
            raise CRMUnavailable(
                f"The CRM's token endpoint did not answer within {self.timeout_s:g} s."
            ) from None
        except requests.RequestException as exc:
            raise CRMUnavailable(
                f"The CRM's token endpoint could not be reached ({type(exc).__name__})."
            ) from None
        return self._parse(resp, started)

    def _parse(self, resp: requests.Response, started: float) -> TokenSet:
        try:
            body: Any = json.loads(resp.content or b"null")
        except (ValueError, UnicodeDecodeError):
            body = None
        code = resp.status_code
        if code == 429:
            from contact_lookup.connectors.http import retry_after_seconds

            raise RateLimited(
                "The CRM's token endpoint is rate limiting requests.",
                retry_after_s=retry_after_seconds(resp.headers.get("Retry-After")),
            )
        if code >= 500:
            raise CRMUnavailable(
                f"The CRM's token endpoint answered HTTP {code}.", status_code=code
            )
        if code >= 400:
            error = body.get("error") or body.get("status") if isinstance(body, Mapping) else None
            if error in ("invalid_grant", "BAD_REFRESH_TOKEN", "BAD_AUTH_CODE"):
                raise InvalidGrant(str(error))
            raise AuthRejected(
                f"The CRM's token endpoint refused the client ({_safe(error) or code}): check "
                "client_id_env / client_secret_env.",
                status_code=code,
            )
        if not isinstance(body, Mapping) or not isinstance(body.get("access_token"), str):
            raise CRMUnavailable(
                "The CRM's token endpoint answered without an access token.", status_code=code
            )
        access = body["access_token"]
        refresh = body.get("refresh_token")
        PROCESS.add(access, refresh if isinstance(refresh, str) else None)
        try:
            lifetime = float(body.get("expires_in") or self.vendor.default_lifetime_s)
        except (TypeError, ValueError):
            lifetime = self.vendor.default_lifetime_s
        base = body.get(self.vendor.base_url_field) if self.vendor.base_url_field else None
        scope = body.get("scope")
        return TokenSet(
            access_token=access,
            refresh_token=refresh if isinstance(refresh, str) and refresh else None,
            expires_at=started + lifetime,
            lifetime_s=lifetime,
            base_url=base if isinstance(base, str) and base.startswith("http") else None,
            scope=scope if isinstance(scope, str) else None,
        )


def _safe(error: object) -> str:
    """An OAuth error code fit for a message: a short word, nothing the server echoed."""
    text = str(error) if error else ""
    return text if text.replace("_", "").isalnum() and len(text) <= 40 else ""
