"""``TokenManager``: a fresh credential for every lookup, one refresh at a time.

The connector factory asks ``get`` for each connector it builds, so the refresh happens in
the core's path before the connector is called; the core calls ``renew`` once when the CRM
answers 401 for a token we believed valid.

- **Proactive**: when the access token expires within ``margin_s`` (default 120 s, never more
  than half the token's lifetime) it is refreshed before use. If that refresh fails for a
  transient reason while the old token has not expired, the old token is used.
- **One refresh at a time** per grant across every thread, process and host: a Redis lock
  (``SET NX PX``, released only by its owner) with a timeout, so a worker killed while holding
  it delays the others by at most ``lock_timeout_s``. A waiter polls the store and takes the
  token the lock holder stored instead of refreshing again (the approach of App Connect's
  ``checkAndRefreshAccessToken``).
- **Rotation**: the token answer is stored (one HSET, new refresh token with new access token)
  before the new access token is returned to anyone.
- **invalid_grant**: the store is read again under the lock: if another refresh rotated the
  refresh token meanwhile, that one is used; only a refresh token still current is marked
  **revoked**. A revoked grant fails fast with ``AuthRevoked``; the token endpoint is tried
  again at most once per ``probe_every_s`` (60 s) per grant, so a revoked connection under
  load never storms it. ``auth seed`` / ``auth connect`` store a new grant and lookups
  recover at once, with no worker restart.
- A token endpoint that is down or rate limited raises ``CRMUnavailable`` / ``RateLimited``
  (transient: the task retries with backoff), never revoked.
- **Per-user grants**: ``user`` (a RingCentral extension id) selects that extension's own
  grant; without one stored, the connection's own grant is used.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable, Mapping

from contact_lookup import metrics
from contact_lookup.auth import vendors
from contact_lookup.auth.endpoint import ClientCredentials, InvalidGrant, TokenEndpoint, TokenSet
from contact_lookup.auth.store import TokenRecord, TokenStore
from contact_lookup.model.config import Connection
from contact_lookup.model.credential import Credential
from contact_lookup.model.errors import AuthRevoked, CRMUnavailable, TransientCRMError

DEFAULT_MARGIN_S = 120.0
DEFAULT_LOCK_TIMEOUT_S = 15.0  # longer than one token call (CRM_HTTP_TIMEOUT, 10 s)
PROBE_EVERY_S = 60.0
POLL_S = 0.02


class TokenManager:
    """The credential source for connections with ``auth`` oauth2 or jwt-bearer."""

    def __init__(
        self,
        store: TokenStore,
        *,
        env: Mapping[str, str] | None = None,
        margin_s: float = DEFAULT_MARGIN_S,
        lock_timeout_s: float = DEFAULT_LOCK_TIMEOUT_S,
        timeout_s: float = 10.0,
        probe_every_s: float = PROBE_EVERY_S,
    ) -> None:
        self.store = store
        self.env = env
        self.margin_s = margin_s
        self.lock_timeout_s = lock_timeout_s
        self.timeout_s = timeout_s
        self.probe_every_s = probe_every_s
        self._endpoints: dict[str, TokenEndpoint] = {}
        self._local = threading.local()

    # ----- the credential source interface -----------------------------------------------------
    def get(self, connection: Connection, user: str | None = None) -> Credential:
        """A credential valid for at least the margin (refreshed first when it is not)."""
        owner, record = self._record(connection, user)
        if record is None:
            if connection.auth == "jwt-bearer":
                return self._credential(self._refresh(connection, owner, seen=None))
            raise AuthRevoked(connection.name, "has no stored tokens")
        if record.state == "revoked":
            return self._credential(self._revoked(connection, owner, record))
        if not record.refresh_due(time.time(), self.margin_s):
            return self._credential(record)
        try:
            return self._credential(self._refresh(connection, owner, seen=record.access_token))
        except TransientCRMError:
            if record.expired(time.time()):
                raise
            return self._credential(record)  # still valid: the next call tries again

    def renew(
        self, connection: Connection, rejected: str | None, user: str | None = None
    ) -> Credential:
        """After a 401 on ``rejected``: the token another worker stored since, or a refresh."""
        owner, record = self._record(connection, user)
        if record is not None and record.state != "revoked" and record.access_token != rejected:
            return self._credential(record)
        return self._credential(self._refresh(connection, owner, seen=rejected, force=True))

    # ----- internals ---------------------------------------------------------------------------
    def _record(
        self, connection: Connection, user: str | None
    ) -> tuple[str | None, TokenRecord | None]:
        """(whose grant, its record): the user's own when stored, else the connection's."""
        if user:
            record = self.store.load(connection.name, user)
            if record is not None:
                return user, record
        return None, self.store.load(connection.name, None)

    def endpoint(self, connection: Connection) -> TokenEndpoint:
        found = self._endpoints.get(connection.name)
        if found is None or found.connection != connection:
            found = TokenEndpoint(
                connection,
                ClientCredentials.of(connection, self.env),
                timeout_s=self.timeout_s,
            )
            self._endpoints[connection.name] = found
        return found

    def _revoked(
        self, connection: Connection, user: str | None, record: TokenRecord
    ) -> TokenRecord:
        if not record.refresh_token or not self.store.may_probe(
            connection.name, user, self.probe_every_s
        ):
            raise AuthRevoked(connection.name)
        return self._refresh(connection, user, seen=record.access_token, force=True, probe=True)

    def _refresh(
        self,
        connection: Connection,
        user: str | None,
        *,
        seen: str | None,
        force: bool = False,
        probe: bool = False,
    ) -> TokenRecord:
        """Refresh under the grant's lock, or take what the lock holder stored."""
        me = uuid.uuid4().hex
        deadline = time.monotonic() + self.lock_timeout_s + self.timeout_s
        while True:
            if self.store.lock(connection.name, user, me, self.lock_timeout_s):
                try:
                    return self._refresh_locked(connection, user, seen, force, probe)
                finally:
                    self.store.unlock(connection.name, user, me)
            fresh = self._wait_for_holder(connection, user, seen, deadline)
            if fresh is not None:
                return fresh
            if time.monotonic() >= deadline:
                raise CRMUnavailable(
                    "Another worker's token refresh did not finish in time.",
                )

    def _wait_for_holder(
        self, connection: Connection, user: str | None, seen: str | None, deadline: float
    ) -> TokenRecord | None:
        """Poll the store while another process holds the lock: its token, or None when the
        lock is gone (or timed out) without one."""
        while time.monotonic() < deadline:
            record = self.store.load(connection.name, user)
            if record is not None and record.state == "revoked":
                raise AuthRevoked(connection.name)
            if record is not None and record.access_token != seen:
                return record
            if not self.store.locked(connection.name, user):
                return None
            time.sleep(POLL_S)
        return None

    def _refresh_locked(
        self,
        connection: Connection,
        user: str | None,
        seen: str | None,
        force: bool,
        probe: bool,
    ) -> TokenRecord:
        record = self.store.load(connection.name, user)  # re-read: the last holder may have won
        if record is not None and record.state == "revoked" and not probe:
            raise AuthRevoked(connection.name)
        if (
            record is not None
            and record.state != "revoked"
            and record.access_token != seen
            and (force or not record.refresh_due(time.time(), self.margin_s))
        ):
            return record
        endpoint = self.endpoint(connection)
        if connection.auth == "jwt-bearer":
            tokens = self._call(connection, user, lambda: endpoint.jwt_bearer())
            return self.store.save(
                connection.name,
                tokens,
                user=user,
                previous=record,
                auth=connection.auth,
                refreshed=record is not None,
            )
        if record is None or not record.refresh_token:
            raise AuthRevoked(connection.name, "has no stored refresh token")
        used = record.refresh_token
        try:
            tokens = self._call(connection, user, lambda: endpoint.refresh(used))
        except InvalidGrant:
            latest = self.store.load(connection.name, user)
            if latest is not None and latest.refresh_token != used and latest.state != "revoked":
                return latest  # rotated by a refresh we did not see: not revoked
            self.store.mark(
                connection.name,
                user,
                error="invalid_grant: refresh token revoked or expired",
                revoked=True,
            )
            self.store.may_probe(connection.name, user, self.probe_every_s)  # next try: +60 s
            raise AuthRevoked(connection.name) from None
        return self.store.save(
            connection.name,
            tokens,
            user=user,
            previous=record,
            auth=connection.auth,
            refreshed=True,
        )

    def _call(
        self, connection: Connection, user: str | None, grant: Callable[[], TokenSet]
    ) -> TokenSet:
        try:
            tokens = grant()
        except InvalidGrant:
            metrics.token_refreshed(connection.name, ok=False)
            raise
        except Exception as exc:
            metrics.token_refreshed(connection.name, ok=False)
            message = getattr(exc, "message", None) or type(exc).__name__
            self.store.mark(connection.name, user, error=f"{type(exc).__name__}: {message}")
            raise
        metrics.token_refreshed(connection.name, ok=True, expires_at=tokens.expires_at or None)
        return tokens

    @staticmethod
    def _credential(record: TokenRecord) -> Credential:
        return Credential(record.access_token, record.base_url)


def check(connection: Connection, env: Mapping[str, str] | None = None) -> None:
    """ConfigError when an OAuth connection does not fit its CRM or misses a variable."""
    if connection.uses_token_store:
        vendors.check(connection)
        ClientCredentials.of(connection, env)
