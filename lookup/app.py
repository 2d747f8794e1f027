"""Wiring: settings -> Redis clients, config, cache, connectors -> LookupService.

Dependencies are built here once per process and passed in through constructors; nothing
below this module reads the environment or holds a module-level client.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import redis

from connectors.registry import ConnectorFactory
from lookup.cache import ContactCache
from lookup.coalesce import Coalescer
from lookup.config import Config, load_config
from lookup.guard import Guard
from lookup.ratelimit import RateLimiter
from lookup.service import LookupService
from lookup.settings import Settings


@dataclass
class Runtime:
    settings: Settings

    @cached_property
    def config(self) -> Config:
        return load_config(self.settings.config_path)

    @cached_property
    def cache_redis(self) -> redis.Redis:
        return redis.Redis.from_url(
            self.settings.cache_url,
            socket_timeout=5,
            socket_connect_timeout=5,
            health_check_interval=30,
        )

    @cached_property
    def connectors(self) -> ConnectorFactory:
        return ConnectorFactory(timeout_s=self.settings.http_timeout_s)

    @cached_property
    def service(self) -> LookupService:
        # Coalescing outside, the shared rate limiter inside (lookup/guard.py).
        guard = Guard(RateLimiter(self.cache_redis), Coalescer(self.cache_redis))
        return LookupService(
            self.config,
            ContactCache(self.cache_redis, self.settings.cache_ttl_s),
            self.connectors,
            guard=guard,
        )
