"""Composition root: settings -> Redis clients, checked config, cache, connectors -> service.

The one place that knows every part. Everything is built once per process and passed in
through constructors; nothing below this module reads the environment or holds a
module-level client, and the core (``contact_lookup.core``) never imports a vendor
connector or the registry: it receives a ``ConnectorSource``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property

import redis

from contact_lookup.auth import vendors
from contact_lookup.auth.crypto import TokenCipher
from contact_lookup.auth.manager import TokenManager
from contact_lookup.auth.store import TokenStore
from contact_lookup.connectors.base import CredentialSource
from contact_lookup.connectors.registry import ConnectorFactory, validate_config
from contact_lookup.core.cache import ContactCache
from contact_lookup.core.coalesce import Coalescer
from contact_lookup.core.ratelimit import RateLimiter
from contact_lookup.core.service import LookupService
from contact_lookup.model.config import Config, Connection, load_config
from contact_lookup.model.credential import Credential
from contact_lookup.model.errors import ConfigError
from contact_lookup.model.redaction import PROCESS, Redactor, redact_url, secret_names
from contact_lookup.redis_urls import redis_client
from contact_lookup.settings import Settings

log = logging.getLogger(__name__)

# The one policy under which Redis never deletes a key to make room: it refuses writes instead
# (Redis docs, "Key eviction": every other maxmemory-policy, volatile-* included, evicts).
NON_EVICTING = "noeviction"


def load_checked_config(path: str, settings: Settings | None = None) -> Config:
    """The connections file, parsed and checked against every connector's declared options.

    Every command loads the file through here, so a typo or a bad option stops it at once
    with ``ConfigError`` naming the table and key, never at the first lookup. With
    ``settings``, also the limits between the file and the environment (``check_settle``).
    """
    config = load_config(path)
    try:
        validate_config(config)
        for connection in config.connections.values():
            vendors.check(connection)  # auth = oauth2 / jwt-bearer only where the CRM has it
    except ConfigError as exc:  # name the file too, like load_config's own errors
        raise ConfigError(f"connections file {path!r}: {exc.message}", hint=exc.hint) from None
    # Every secret the file names is redacted from logs, traces and stored exception text.
    PROCESS.add(*Redactor.from_env(secret_names(config.connections.values())).secrets)
    if settings is not None:
        check_settle(config, settings)
    return config


def check_settle(config: Config, settings: Settings) -> None:
    """``[telephony] settle_seconds`` is a countdown every call log waits: like a retry's, it
    must stay below VISIBILITY_TIMEOUT, or the Redis transport delivers the waiting job again
    before it is due (contact_lookup.settings)."""
    if config.settle_seconds >= settings.visibility_timeout_s:
        raise ConfigError(
            f"connections file {settings.config_path!r}: [telephony] settle_seconds="
            f"{config.settle_seconds:g} must be below VISIBILITY_TIMEOUT="
            f"{settings.visibility_timeout_s:g} s (a call log waits that long on a worker)"
        )


def check_state_redis(client: redis.Redis, url: str) -> str:
    """Refuse a state Redis that may evict keys; return its ``maxmemory_policy``.

    The state Redis (STATE_URL) holds what must not vanish early: an evicted webhook dedupe
    key is a duplicate call log, an evicted limiter bucket a burst of 429s, an evicted
    coalescing key a duplicate CRM request. Redis evicts under every ``maxmemory-policy`` but
    ``noeviction`` (https://redis.io/docs/latest/develop/reference/eviction/), whatever
    ``maxmemory`` is now (it can be raised at run time), so anything else is refused.

    Reads ``INFO memory`` (not ``CONFIG GET``, which managed Redis services often rename).
    Raises ``ConfigError`` naming STATE_URL (password redacted) for an evicting policy;
    ``redis.RedisError`` when the server cannot be reached.
    """
    policy = str(client.info("memory").get("maxmemory_policy", NON_EVICTING))
    if policy != NON_EVICTING:
        raise ConfigError(
            f"STATE_URL={redact_url(url)!r} runs maxmemory-policy {policy}, which evicts keys: "
            "the rate-limit, coalescing and dedupe state needs a Redis with noeviction "
            "(point CACHE_URL, not STATE_URL, at an LRU Redis)"
        )
    return policy


@dataclass
class Runtime:
    """One process's lookup runtime, built lazily from its settings."""

    settings: Settings

    @cached_property
    def config(self) -> Config:
        return load_checked_config(self.settings.config_path, self.settings)

    @cached_property
    def cache_redis(self) -> redis.Redis:
        """The contact cache (CACHE_URL): may evict (LRU); a lost key costs one CRM request."""
        return redis_client(self.settings.cache_url)

    @cached_property
    def state_redis(self) -> redis.Redis:
        """Shared coordination state (STATE_URL, noeviction): limiter, coalescing, dedupe,
        call-pop channel, token store."""
        if self.settings.state_url == self.settings.cache_url:
            return self.cache_redis  # one Redis for both (the default): one client
        return redis_client(self.settings.state_url)

    def check_state_redis(self) -> bool:
        """The start-up check of the state Redis (``check_state_redis``): True when checked,
        False when the server could not be reached (logged; the caller starts anyway and the
        Redis errors of each request say the rest). ``ConfigError`` when it may evict."""
        try:
            check_state_redis(self.state_redis, self.settings.state_url)
        except redis.RedisError as exc:
            log.warning(
                "state Redis %s unreachable at start-up (%s): its eviction policy is unchecked",
                redact_url(self.settings.state_url),
                type(exc).__name__,
            )
            return False
        return True

    @cached_property
    def token_store(self) -> TokenStore:
        """OAuth tokens, encrypted, on the state Redis (never evicted). ConfigError without
        TOKEN_ENCRYPTION_KEY."""
        return TokenStore(self.state_redis, TokenCipher(self.settings.token_encryption_key or ""))

    @cached_property
    def tokens(self) -> TokenManager:
        return TokenManager(self.token_store, timeout_s=self.settings.http_timeout_s)

    @cached_property
    def connectors(self) -> ConnectorFactory:
        uses_store = any(c.uses_token_store for c in self.config.connections.values())
        return ConnectorFactory(
            timeout_s=self.settings.http_timeout_s,
            credentials=_OnFirstUse(lambda: self.tokens) if uses_store else None,
        )

    @cached_property
    def service(self) -> LookupService:
        return LookupService(
            self.config,
            ContactCache(self.cache_redis, self.settings.cache_ttl_s),
            self.connectors,
            limiter=RateLimiter(self.state_redis),
            coalescer=Coalescer(self.state_redis),
        )


class _OnFirstUse:
    """The token manager, made when an OAuth connection first needs a credential: a process
    that never builds one (the webhook, replay, relookup, a lookup of a ``token_env``
    connection) runs without TOKEN_ENCRYPTION_KEY; one that does gets its ConfigError then."""

    def __init__(self, make: Callable[[], CredentialSource]) -> None:
        self._make = make

    def get(self, connection: Connection, user: str | None = None) -> Credential:
        return self._make().get(connection, user)

    def renew(
        self, connection: Connection, rejected: str | None, user: str | None = None
    ) -> Credential:
        return self._make().renew(connection, rejected, user)
