"""findContact: the lookup core. Synchronous, and knows nothing of Celery.

    cache -> connector (one request per phone format) -> normalise -> cache -> result

``lookup`` raises ``TransientCRMError`` so its caller can decide how to retry (a Celery task
retries with a countdown; ``--local`` reports the failure). ``find_contact`` wraps it and
always returns a result. Permanent CRM errors and invalid input become a failed result in
both, never an empty success.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from connectors.base import Connector
from connectors.registry import ConnectorFactory
from lookup import contact, phone
from lookup.cache import ContactCache
from lookup.config import Config, Connection
from lookup.errors import ContactLookupError, InvalidInput, PermanentCRMError
from lookup.resolve import STRATEGIES, resolve
from lookup.trace import DebugTrace

PURPOSES = ("call_pop", "call_log", "message_log", "relookup")
LOGGING_PURPOSES = ("call_log", "message_log")


@dataclass(frozen=True)
class Query:
    """One findContact request (the spec's inputs, minus what the connection provides)."""

    phone_number: str
    purpose: str = "call_pop"
    overriding_format: str | None = None  # None: the connection's own formats
    is_extension: bool = False
    force_refresh: bool = False
    debug: bool = False
    resolve: str | None = None


@dataclass(frozen=True)
class Prepared:
    """A validated query: what to ask the CRM and where its answer is cached."""

    connection: Connection
    number: str
    queries: list[str]
    cache_key: str


# Wraps the CRM part of a lookup: (prepared, query, connector, run) -> run()'s result
# (lookup/guard.py). The connector is the one run() will use, built once per lookup.
GuardHook = Callable[[Prepared, Query, Connector, Callable[[], dict[str, Any]]], dict[str, Any]]


class LookupService:
    def __init__(
        self,
        config: Config,
        cache: ContactCache,
        connectors: ConnectorFactory,
        *,
        guard: GuardHook | None = None,
    ) -> None:
        self.config = config
        self.cache = cache
        self.connectors = connectors
        # Wraps the CRM part of a lookup (rate limiting, coalescing); identity by default.
        self.guard = guard

    def prepare(self, connection_name: str, query: Query) -> Prepared:
        """Validate the request; InvalidInput or ConfigError when it can never succeed."""
        conn = self.config.connection(connection_name)
        if query.purpose not in PURPOSES:
            raise InvalidInput(
                f"Unknown purpose {query.purpose!r}.", hint=f"Use one of {', '.join(PURPOSES)}."
            )
        if query.resolve is not None and query.resolve not in STRATEGIES:
            raise InvalidInput(
                f"Unknown resolve strategy {query.resolve!r}.",
                hint=f"Use one of {', '.join(STRATEGIES)}.",
            )
        if query.is_extension:
            if not conn.extension_lookup:
                raise InvalidInput(
                    f"Extension lookup is off for connection {conn.name!r}.",
                    hint="Set extension_lookup = true on the connection to look up "
                    "extension numbers.",
                )
            number = phone.extension(query.phone_number)
            return Prepared(
                conn, number, [number], self.cache.key(conn, number, [], is_extension=True)
            )
        number = phone.normalise(query.phone_number, conn.region)
        formats = phone.split_formats(
            conn.formats if query.overriding_format is None else query.overriding_format
        )
        return Prepared(
            conn,
            number,
            phone.queries(number, ",".join(formats)),
            self.cache.key(conn, number, formats),
        )

    def lookup(self, connection_name: str, query: Query) -> dict[str, Any]:
        """The result; raises TransientCRMError for the caller to retry."""
        trace = DebugTrace() if query.debug else None
        try:
            prepared = self.prepare(connection_name, query)
        except ContactLookupError as exc:
            return self._finish(contact.failure(exc), trace)
        result: dict[str, Any] | None = None
        if not query.force_refresh:
            cached = self.cache.get(prepared.cache_key)
            if cached is not None:
                result = contact.success(cached, prepared.number, tracking={"isCached": True})
        if result is None:
            try:
                connector = self.connectors.build(prepared.connection, trace)

                def run() -> dict[str, Any]:
                    return self._from_crm(prepared, query, connector)

                result = self.guard(prepared, query, connector, run) if self.guard else run()
            except PermanentCRMError as exc:
                return self._finish(contact.failure(exc), trace)
        return self._finish(self._decorate(result, prepared, query), trace)

    def cached(self, connection_name: str, query: Query) -> dict[str, Any] | None:
        """The full result when the answer is already cached, else None (one Redis GET).

        The producers' call-pop fast path: InvalidInput / ConfigError propagate so the caller
        can report why it skipped the event.
        """
        prepared = self.prepare(connection_name, query)
        contacts = self.cache.get(prepared.cache_key)
        if contacts is None:
            return None
        result = contact.success(contacts, prepared.number, tracking={"isCached": True})
        return self._decorate(result, prepared, query)

    def find_contact(self, connection_name: str, query: Query) -> dict[str, Any]:
        """Like lookup, but a transient failure is a failed result too (no retry here)."""
        try:
            return self.lookup(connection_name, query)
        except ContactLookupError as exc:
            return contact.failure(exc)

    def _from_crm(self, prepared: Prepared, query: Query, connector: Connector) -> dict[str, Any]:
        outcome = connector.find(prepared.queries)
        if outcome.contacts:
            self.cache.put(prepared.cache_key, outcome.contacts)
        elif query.force_refresh:
            self.cache.delete(prepared.cache_key)  # the CRM says the cached match is stale
        tracking = outcome.rate_limit.tracking() if outcome.rate_limit else {}
        return contact.success(outcome.contacts, prepared.number, tracking=tracking)

    def _decorate(self, result: dict[str, Any], prepared: Prepared, query: Query) -> dict[str, Any]:
        """Per-request additions that are never cached: the placeholder and the resolution."""
        conn = prepared.connection
        contacts = list(result["matchedContactInfo"])
        if conn.create_option:
            contacts.append(contact.placeholder())
        result = {**result, "matchedContactInfo": contacts}
        strategy = query.resolve or (conn.resolve if query.purpose in LOGGING_PURPOSES else None)
        if strategy:
            resolution, warning = resolve(strategy, contacts)
            result["resolution"] = resolution
            if warning is not None:
                result["returnMessage"] = warning
        return result

    @staticmethod
    def _finish(result: dict[str, Any], trace: DebugTrace | None) -> dict[str, Any]:
        if trace is not None:
            result["debugTrace"] = trace.entries
        return result
