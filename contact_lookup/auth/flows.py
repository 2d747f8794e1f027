"""What the ``contact-lookup auth`` commands do; the CLI handlers only parse and print.

- ``connect``: the authorization-code flow (RFC 6749 section 4.1). The authorize URL (client
  id, ``redirect_uri``, ``state``, scopes) is shown to the operator; the redirect comes back
  either to a one-request local listener (``--listen 127.0.0.1:PORT``; the redirect URI
  registered with the vendor must be ``http://127.0.0.1:PORT/callback``) or pasted on stdin;
  ``state`` is checked, the code exchanged and the tokens stored; then the vendor's identity
  endpoint names who is connected (``connected``), never a token.
- ``seed``: store tokens obtained elsewhere (CI, a migration from App Connect). Without an
  access token the refresh token is used at once, which also proves it works.
- ``status``: one record per grant, never a token.
- ``revoke``: forget a grant's stored tokens.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

from contact_lookup.auth import identity, vendors
from contact_lookup.auth.endpoint import ClientCredentials, InvalidGrant, TokenEndpoint, TokenSet
from contact_lookup.auth.manager import TokenManager
from contact_lookup.model.config import Config, Connection
from contact_lookup.model.errors import AuthRevoked, ConfigError
from contact_lookup.model.redaction import PROCESS


def _oauth(connection: Connection) -> None:
    if not connection.uses_token_store:
        raise ConfigError(
            f'connection {connection.name!r} uses auth = "token" (token_env); set auth = '
            '"oauth2" to keep its tokens in the token store'
        )


def seed(
    manager: TokenManager,
    connection: Connection,
    refresh_token: str,
    *,
    access_token: str | None = None,
    expires_in: float | None = None,
    user: str | None = None,
) -> dict[str, Any]:
    """Store a grant from elsewhere; its status afterwards."""
    _oauth(connection)
    PROCESS.add(refresh_token, access_token)
    now = time.time()
    lifetime = (
        expires_in if expires_in is not None else vendors.vendor(connection).default_lifetime_s
    )
    tokens = TokenSet(
        access_token=access_token or "",
        refresh_token=refresh_token,
        expires_at=now + lifetime if access_token else 0.0,
        lifetime_s=lifetime if access_token else 0.0,
    )
    manager.store.save(connection.name, tokens, user=user, auth=connection.auth)
    if not access_token:
        manager.get(connection, user)  # refresh now: proves the refresh token works
    return connected(manager, connection, user)


def connected(
    manager: TokenManager, connection: Connection, user: str | None = None
) -> dict[str, Any]:
    """The grant's status plus who is connected (``connectedAs``, from the vendor's identity
    endpoint, ``identity.py``). An identity endpoint that fails leaves the stored tokens as
    they are: ``connectedAs`` is None and ``identityError`` says why."""
    out = status_of(manager, connection, user)
    record = manager.store.load(connection.name, user)
    if record is None or not record.access_token:
        return {**out, "connectedAs": None, "identityError": "no access token stored"}
    try:
        found = identity.who(connection, record, timeout_s=manager.timeout_s)
    except identity.IdentityUnavailable as exc:
        return {**out, "connectedAs": None, "identityError": f"could not be read ({exc})"}
    return {**out, "connectedAs": found}


def status_of(
    manager: TokenManager, connection: Connection, user: str | None = None
) -> dict[str, Any]:
    """``{connection, auth, state, expiresAt, lastRefreshAt, refreshCount, lastError}``:
    state is ``valid``, ``expiring`` (a refresh is due), ``revoked`` or ``missing``."""
    out: dict[str, Any] = {"connection": connection.name, "auth": connection.auth}
    if user:
        out["extension"] = user
    record = manager.store.load(connection.name, user) if connection.uses_token_store else None
    if record is None:
        return _without_record(connection, user)
    if record.state == "revoked":
        state = "revoked"
    elif record.refresh_due(time.time(), manager.margin_s):
        state = "expiring"
    else:
        state = "valid"
    return {
        **out,
        "state": state,
        "expiresAt": _iso(record.expires_at),
        "lastRefreshAt": _iso(record.last_refresh_at),
        "refreshCount": record.refresh_count,
        "lastError": record.last_error or None,
    }


def _without_record(connection: Connection, user: str | None = None) -> dict[str, Any]:
    """A ``token_env`` connection (``valid``: its key does not expire) or an OAuth grant
    with nothing stored (``missing``)."""
    out: dict[str, Any] = {"connection": connection.name, "auth": connection.auth}
    if user:
        out["extension"] = user
    return {
        **out,
        "state": "missing" if connection.uses_token_store else "valid",
        "expiresAt": None,
        "lastRefreshAt": None,
        "refreshCount": 0,
        "lastError": None,
    }


def status(
    manager: TokenManager | Callable[[], TokenManager], config: Config, name: str | None = None
) -> Iterator[dict[str, Any]]:
    """Every connection's status (and each extension's own grant), or one connection's.

    ``manager`` may be a callable that makes it, called at the first OAuth connection: a
    file of ``token_env`` connections only is shown without TOKEN_ENCRYPTION_KEY."""
    make = manager if not isinstance(manager, TokenManager) else (lambda: manager)
    made: TokenManager | None = None
    names = [config.connection(name).name] if name else sorted(config.connections)
    for n in names:
        connection = config.connections[n]
        if not connection.uses_token_store:
            yield _without_record(connection)
            continue
        made = made or make()
        yield status_of(made, connection)
        for user in sorted(made.store.users(n)):
            yield status_of(made, connection, user)


def revoke(manager: TokenManager, connection: Connection, user: str | None = None) -> bool:
    _oauth(connection)
    return manager.store.forget(connection.name, user)


# ----- connect: the authorization-code flow --------------------------------------------------
def authorize_url(connection: Connection, client_id: str, redirect_uri: str, state: str) -> str:
    params = {
        "response_type": "code",
        "client_id": client_id,
        "redirect_uri": redirect_uri,
        "state": state,
    }
    if connection.scopes:
        params["scope"] = " ".join(connection.scopes)
    return f"{vendors.authorize_url(connection)}?{urlencode(params)}"


def code_from_redirect(url: str, state: str) -> str:
    """The ``code`` of a redirect URL (or its query string); ConfigError on a wrong state or
    a refusal (RFC 6749 section 4.1.2.1 ``error``)."""
    query = parse_qs(urlsplit(url.strip()).query or url.strip().lstrip("?"))
    if "error" in query:
        raise ConfigError(f"the CRM refused the authorisation: {query['error'][0][:60]}")
    if query.get("state", [""])[0] != state:
        raise ConfigError("the redirect's state does not match this connect attempt")
    code = query.get("code", [""])[0]
    if not code:
        raise ConfigError("the redirect carries no code")
    PROCESS.add(code)
    return code


def listen_for_redirect(
    host: str, port: int, timeout_s: float, ready: Callable[[str], None]
) -> str:
    """Serve one redirect on ``http://host:port/callback``; its full URL."""
    got: dict[str, str] = {}

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            got["url"] = self.path
            body = b"<html><body>Connected. You can close this window.</body></html>"
            self.send_response(200)
            self.send_header("Content-Type", "text/html")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            pass  # the URL carries the code: never logged

    server = HTTPServer((host, port), Handler)
    server.timeout = 0.2
    try:
        ready(f"http://{host}:{server.server_address[1]}/callback")
        deadline = time.monotonic() + timeout_s
        while "url" not in got:
            if time.monotonic() > deadline:
                raise ConfigError(f"no redirect arrived within {timeout_s:g} s")
            server.handle_request()
    finally:
        server.server_close()
    return got["url"]


def connect(
    manager: TokenManager,
    connection: Connection,
    *,
    redirect_uri: str | None,
    get_redirect: Callable[[str, str], str],
    user: str | None = None,
    env: Any = None,
) -> dict[str, Any]:
    """Run the authorization-code flow. ``get_redirect(authorize_url, redirect_uri)`` returns
    the redirect URL the vendor sent the browser to."""
    _oauth(connection)
    if connection.auth != "oauth2":
        raise ConfigError(f'connection {connection.name!r}: connect is for auth = "oauth2"')
    client = ClientCredentials.of(connection, env)
    state = secrets.token_urlsafe(16)
    redirect = redirect_uri or "http://127.0.0.1/callback"
    url = authorize_url(connection, client.client_id, redirect, state)
    code = code_from_redirect(get_redirect(url, redirect), state)
    endpoint = TokenEndpoint(connection, client, timeout_s=manager.timeout_s)
    try:
        tokens = endpoint.exchange_code(code, redirect)
    except InvalidGrant:
        raise AuthRevoked(connection.name, "was not granted: the code was refused") from None
    manager.store.save(connection.name, tokens, user=user, auth=connection.auth)
    return connected(manager, connection, user)


def rotate_key(manager: TokenManager) -> int:
    """Re-encrypt every stored grant with the first TOKEN_ENCRYPTION_KEY key."""
    return manager.store.rotate_keys()


def _iso(epoch: float) -> str | None:
    if not epoch:
        return None
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(epoch))


__all__ = [
    "connect",
    "connected",
    "listen_for_redirect",
    "revoke",
    "rotate_key",
    "seed",
    "status",
    "status_of",
]
