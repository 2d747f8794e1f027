"""The token store: one Redis hash per OAuth grant, on the state Redis (STATE_URL).

Why there: the contact cache may evict (``allkeys-lru``) and an evicted refresh token would
need a person to reconnect the CRM; the state Redis is ``noeviction`` with an append-only
file (README "Deployment"). Records never expire on their own.

Record (``keys.auth_tokens(connection, user)``), every field a string:

    secret         Fernet token of {"access_token", "refresh_token"}  (crypto.TokenCipher)
    auth           the connection's auth kind
    baseUrl        the API host the vendor named (instance_url / api_domain), or ""
    expiresAt      epoch seconds the access token expires
    lifetime       seconds the access token was issued for
    lastRefreshAt  epoch seconds of the last successful token answer
    refreshCount   successful refreshes since the grant was stored
    state          "valid" or "revoked"
    lastError      the last refresh failure, redacted; "" after a success

A record is written with one HSET, so a reader sees the new refresh token and the new access
token together or neither (rotation is atomic). No token is ever stored in clear.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field

import redis

from contact_lookup.auth.crypto import TokenCipher
from contact_lookup.auth.endpoint import TokenSet
from contact_lookup.core import keys
from contact_lookup.model.redaction import PROCESS

REDACT_GENERATIONS = 6  # token values per grant redacted by value (3 access + 3 refresh)
# RELEASE: delete the lock only if we still own it (a lock that timed out may be another's).
_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""


@dataclass(frozen=True)
class TokenRecord:
    access_token: str = field(repr=False)
    refresh_token: str | None = field(default=None, repr=False)
    expires_at: float = 0.0
    lifetime_s: float = 0.0
    base_url: str | None = None
    last_refresh_at: float = 0.0
    refresh_count: int = 0
    state: str = "valid"
    last_error: str = ""
    auth: str = "oauth2"

    def refresh_due(self, now: float, margin_s: float) -> bool:
        """True when the access token expires within the margin, never more than half its
        lifetime (so a 3-second token is refreshed every ~1.5 s, not on every call)."""
        margin = min(margin_s, self.lifetime_s / 2) if self.lifetime_s > 0 else margin_s
        return now >= self.expires_at - margin

    def expired(self, now: float) -> bool:
        return now >= self.expires_at


class TokenStore:
    """Encrypted token records in Redis. Thread-safe (a redis-py client is)."""

    def __init__(self, client: redis.Redis, cipher: TokenCipher) -> None:
        self.redis = client
        self.cipher = cipher
        self._release = client.register_script(_RELEASE)
        self._seen: dict[tuple[str, str | None], deque[str]] = {}

    def _redact(self, connection: str, user: str | None, *tokens: str | None) -> None:
        """Whatever this process loads it never logs (PROCESS redacts it). Only the last
        ``REDACT_GENERATIONS`` values per grant are kept by value, so months of refreshes do
        not grow the redactor without bound; older ones are long expired."""
        seen = self._seen.setdefault((connection, user), deque())
        for token in tokens:
            if token and token not in seen:
                PROCESS.add(token)
                seen.append(token)
        while len(seen) > REDACT_GENERATIONS:
            PROCESS.discard(seen.popleft())

    def load(self, connection: str, user: str | None = None) -> TokenRecord | None:
        raw: dict[bytes, bytes] = self.redis.hgetall(keys.auth_tokens(connection, user))  # type: ignore[assignment]
        if not raw:
            return None
        f = {k.decode(): v.decode() for k, v in raw.items()}
        secret = self.cipher.decrypt(f["secret"].encode()) if f.get("secret") else {}
        access, refresh = secret.get("access_token") or "", secret.get("refresh_token")
        self._redact(connection, user, access, refresh)
        return TokenRecord(
            access_token=access,
            refresh_token=refresh,
            expires_at=float(f.get("expiresAt") or 0),
            lifetime_s=float(f.get("lifetime") or 0),
            base_url=f.get("baseUrl") or None,
            last_refresh_at=float(f.get("lastRefreshAt") or 0),
            refresh_count=int(f.get("refreshCount") or 0),
            state=f.get("state") or "valid",
            last_error=f.get("lastError") or "",
            auth=f.get("auth") or "oauth2",
        )

    def save(
        self,
        connection: str,
        tokens: TokenSet,
        *,
        user: str | None = None,
        previous: TokenRecord | None = None,
        auth: str = "oauth2",
        refreshed: bool = False,
    ) -> TokenRecord:
        """Store a token answer in one HSET; a missing refresh token keeps the previous one."""
        refresh = tokens.refresh_token or (previous.refresh_token if previous else None)
        record = TokenRecord(
            access_token=tokens.access_token,
            refresh_token=refresh,
            expires_at=tokens.expires_at,
            lifetime_s=tokens.lifetime_s,
            base_url=tokens.base_url or (previous.base_url if previous else None),
            last_refresh_at=time.time(),
            refresh_count=(previous.refresh_count if previous else 0) + (1 if refreshed else 0),
            auth=auth,
        )
        self._redact(connection, user, record.access_token, record.refresh_token)
        blob = self.cipher.encrypt(
            {"access_token": record.access_token, "refresh_token": record.refresh_token}
        )
        self.redis.hset(
            keys.auth_tokens(connection, user),
            mapping={
                "secret": blob,
                "auth": auth,
                "baseUrl": record.base_url or "",
                "expiresAt": repr(record.expires_at),
                "lifetime": repr(record.lifetime_s),
                "lastRefreshAt": repr(record.last_refresh_at),
                "refreshCount": str(record.refresh_count),
                "state": "valid",
                "lastError": "",
            },
        )
        self.redis.delete(keys.auth_probe(connection, user))
        return record

    def mark(self, connection: str, user: str | None, *, error: str, revoked: bool = False) -> None:
        """Record a refresh failure (redacted); ``revoked`` also flips the state."""
        key = keys.auth_tokens(connection, user)
        text = PROCESS(error)[:300]
        if revoked:
            self.redis.hset(key, mapping={"lastError": text, "state": "revoked"})
        else:
            self.redis.hset(key, "lastError", text)

    def forget(self, connection: str, user: str | None = None) -> bool:
        """Delete a grant's record; True when there was one."""
        removed = self.redis.delete(
            keys.auth_tokens(connection, user),
            keys.auth_probe(connection, user),
        )
        return bool(removed)

    def users(self, connection: str) -> Iterator[str]:
        """The extensions with their own tokens on this connection."""
        prefix = keys.auth_tokens(connection, "")[: -len("-")]
        for key in self.redis.scan_iter(match=prefix + "*", count=100):
            user = key.decode()[len(prefix) :]
            if user and user != "-" and ":" not in user:
                yield user

    # ----- the refresh lock and the revoked-probe gate ----------------------------------------
    def lock(self, connection: str, user: str | None, owner: str, timeout_s: float) -> bool:
        return bool(
            self.redis.set(
                keys.auth_lock(connection, user), owner, nx=True, px=int(timeout_s * 1000)
            )
        )

    def unlock(self, connection: str, user: str | None, owner: str) -> None:
        self._release(keys=[keys.auth_lock(connection, user)], args=[owner])

    def locked(self, connection: str, user: str | None) -> bool:
        return bool(self.redis.exists(keys.auth_lock(connection, user)))

    def may_probe(self, connection: str, user: str | None, every_s: float) -> bool:
        """True at most once per ``every_s`` per grant, across every process."""
        return bool(
            self.redis.set(keys.auth_probe(connection, user), "1", nx=True, ex=int(every_s))
        )

    def rotate_keys(self) -> int:
        """Re-encrypt every record with the primary key; the number of records rewritten."""
        count = 0
        for key in self.redis.scan_iter(match=keys.auth_tokens("*", "*"), count=100):
            if key.endswith((b":lock", b":probe")):
                continue
            blob = self.redis.hget(key, "secret")
            if isinstance(blob, bytes) and blob:
                self.redis.hset(key, "secret", self.cipher.rotate(blob))
                count += 1
        return count
