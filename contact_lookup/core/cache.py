"""The contact cache (spec: Caching): real matches by RingCentral account, CRM instance,
number and formats, with a TTL.

Only real contacts are stored: the "Create new contact..." placeholder never is, and an empty
match is not cached (a forced refresh that finds nothing deletes the stale entry instead).
A CRM error never reaches this module, so a failure cannot poison or erase the cache.
"""

from __future__ import annotations

import json
from typing import Any

import redis

from contact_lookup.core import keys
from contact_lookup.model.config import Connection
from contact_lookup.model.contact import is_placeholder


class Pending:
    """A cache write a lookup hands to whoever can fold it into a script it runs anyway
    (the coalescing leader's hand-off, core/coalesce.py), on ``client``. ``done`` once written;
    else the lookup writes it itself (``ContactCache.flush``)."""

    def __init__(self, client: redis.Redis, ttl_s: int) -> None:
        self.client = client
        self.ttl_s = ttl_s
        self.key: str | None = None
        self.value = ""
        self.done = False


class ContactCache:
    def __init__(self, client: redis.Redis, ttl_s: float = 86400.0) -> None:
        self.redis = client
        self.ttl_s = int(ttl_s)

    @staticmethod
    def key(
        connection: Connection, number: str, formats: list[str], is_extension: bool = False
    ) -> str:
        shape = "ext" if is_extension else "|".join(formats)
        return keys.contacts(
            connection.rc_account, connection.name, connection.instance, number, shape
        )

    def get(self, key: str) -> list[dict[str, Any]] | None:
        raw = self.redis.get(key)
        if raw is None:
            return None
        try:
            contacts = json.loads(raw)
        except ValueError:
            contacts = None
        if not isinstance(contacts, list) or not contacts:
            self.redis.delete(key)  # unreadable: treat as a miss rather than serve it
            return None
        return contacts

    def put(self, key: str, contacts: list[dict[str, Any]], pending: Pending | None = None) -> bool:
        """Cache the real contacts (False when there are none); with ``pending``, the write is
        left in it for a script that runs anyway (``flush`` writes what none took)."""
        real = [c for c in contacts if not is_placeholder(c)]
        if not real:
            return False
        value = json.dumps(real, separators=(",", ":"))
        if pending is not None:
            pending.key, pending.value = key, value
            return True
        self.redis.set(key, value, ex=self.ttl_s)
        return True

    def pending(self) -> Pending:
        return Pending(self.redis, self.ttl_s)

    def flush(self, pending: Pending) -> None:
        """Write ``pending`` if no script took it."""
        if pending.key is not None and not pending.done:
            self.redis.set(pending.key, pending.value, ex=self.ttl_s)
            pending.done = True

    def delete(self, key: str) -> None:
        self.redis.delete(key)
