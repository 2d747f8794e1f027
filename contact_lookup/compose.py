"""Composition root: settings -> Redis clients, checked config, cache, connectors -> service.

The one place that knows every part. Everything is built once per process and passed in
through constructors; nothing below this module reads the environment or holds a
module-level client, and the core (``contact_lookup.core``) never imports a vendor
connector or the registry: it receives a ``ConnectorSource``.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import redis

from contact_lookup.auth import vendors
from contact_lookup.auth.crypto import TokenCipher
from contact_lookup.auth.manager import TokenManager
from contact_lookup.auth.store import TokenStore
from contact_lookup.connectors.registry import ConnectorFactory, validate_config
from contact_lookup.core.cache import ContactCache
from contact_lookup.core.coalesce import Coalescer
from contact_lookup.core.ratelimit import RateLimiter
from contact_lookup.core.service import LookupService
from contact_lookup.model.config import Config, load_config
from contact_lookup.model.errors import ConfigError
from contact_lookup.model.redaction import PROCESS, Redactor, secret_names
from contact_lookup.settings import Settings


def load_checked_config(path: str) -> Config:
    """The connections file, parsed and checked against every connector's declared options.

    Every command loads the file through here, so a typo or a bad option stops it at once
    with ``ConfigError`` naming the table and key, never at the first lookup.
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
    return config


def _redis(url: str) -> redis.Redis:
    return redis.Redis.from_url(
        url, socket_timeout=5, socket_connect_timeout=5, health_check_interval=30
    )


@dataclass
class Runtime:
    """One process's lookup runtime, built lazily from its settings."""

    settings: Settings

    @cached_property
    def config(self) -> Config:
        return load_checked_config(self.settings.config_path)

    @cached_property
    def cache_redis(self) -> redis.Redis:
        """The contact cache (may evict: LRU)."""
        return _redis(self.settings.cache_url)

    @cached_property
    def state_redis(self) -> redis.Redis:
        """Shared state that must never be evicted (STATE_URL; limiter, coalescing, dedupe)."""
        if self.settings.state_url == self.settings.cache_url:
            return self.cache_redis
        return _redis(self.settings.state_url)

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
            credentials=self.tokens if uses_store else None,
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
