"""findContact: the lookup core. Synchronous, and knows nothing of Celery.

    cache -> connector (one request per phone format) -> normalise -> cache -> result

``lookup`` raises ``TransientCRMError`` so its caller can decide how to retry (a Celery task
retries with a countdown; ``--local`` reports the failure). ``find_contact`` wraps it and
always returns a result. Permanent CRM errors and invalid input become a failed result in
both, never an empty success.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from contact_lookup.connectors.base import Connector, ConnectorSource
from contact_lookup.core import callpop
from contact_lookup.core.cache import ContactCache, Pending
from contact_lookup.core.coalesce import Coalescer
from contact_lookup.core.guard import Guard
from contact_lookup.core.ratelimit import RateLimiter
from contact_lookup.core.request import LookupRequest, Prepared
from contact_lookup.core.resolve import STRATEGIES, resolve
from contact_lookup.model import contact, phone
from contact_lookup.model.config import Config
from contact_lookup.model.errors import (
    AuthRejected,
    AuthRevoked,
    ContactLookupError,
    InvalidInput,
    PermanentCRMError,
)
from contact_lookup.model.purpose import Purpose
from contact_lookup.model.trace import DebugTrace

__all__ = ["CachedPop", "LookupRequest", "LookupService", "Prepared"]


@dataclass(frozen=True)
class CachedPop:
    """A call pop answerable from the cache in one Redis script: the message is
    ``before + contacts + after``, where ``contacts`` is the cached JSON array with ``extra``
    (the placeholder, or "") added as its last element(s)."""

    prepared: Prepared
    before: str
    after: str
    extra: str


class LookupService:
    """findContact over one connections file.

    ``connectors`` builds the connector for a connection (``ConnectorSource``); ``limiter``
    and ``coalescer`` guard the CRM part of a cache miss (either may be None: off).
    """

    def __init__(
        self,
        config: Config,
        cache: ContactCache,
        connectors: ConnectorSource,
        *,
        limiter: RateLimiter | None = None,
        coalescer: Coalescer | None = None,
    ) -> None:
        self.config = config
        self.cache = cache
        self.connectors = connectors
        self.guard = Guard(limiter, coalescer)

    def prepare(
        self,
        connection_name: str,
        request: LookupRequest,
        *,
        normalised: bool = False,
        terms: bool = True,
    ) -> Prepared:
        """Validate the request; InvalidInput or ConfigError when it can never succeed.

        ``normalised``: ``request.phone_number`` is already E.164 (the producers' plan parsed
        it), so it is not parsed again. ``terms=False``: no search terms (a cache read needs
        none; formatting them parses the number)."""
        conn = self.config.connection(connection_name)
        try:
            Purpose.parse(request.purpose)
        except ValueError as exc:
            raise InvalidInput(
                f"Unknown purpose {request.purpose!r}.",
                hint=f"Use one of {', '.join(p.value for p in Purpose)}.",
            ) from exc
        if request.resolve is not None and request.resolve not in STRATEGIES:
            raise InvalidInput(
                f"Unknown resolve strategy {request.resolve!r}.",
                hint=f"Use one of {', '.join(STRATEGIES)}.",
            )
        if request.is_extension:
            if not conn.extension_lookup:
                raise InvalidInput(
                    f"Extension lookup is off for connection {conn.name!r}.",
                    hint="Set extension_lookup = true on the connection to look up "
                    "extension numbers.",
                )
            number = phone.extension(request.phone_number)
            return Prepared(
                conn, number, [number], self.cache.key(conn, number, [], is_extension=True)
            )
        number = (
            request.phone_number if normalised else phone.to_e164(request.phone_number, conn.region)
        )
        formats = phone.split_formats(
            conn.formats if request.overriding_format is None else request.overriding_format
        )
        return Prepared(
            conn,
            number,
            phone.queries(number, ",".join(formats)) if terms else [],
            self.cache.key(conn, number, formats),
        )

    def lookup(self, connection_name: str, request: LookupRequest) -> dict[str, Any]:
        """The result; raises TransientCRMError for the caller to retry."""
        trace = DebugTrace() if request.debug else None
        try:
            prepared = self.prepare(connection_name, request)
        except ContactLookupError as exc:
            return self._finish(contact.failure(exc), trace)
        result: dict[str, Any] | None = None
        if not request.force_refresh:
            cached = self.cache.get(prepared.cache_key)
            if cached is not None:
                result = contact.success(cached, prepared.number, tracking={"isCached": True})
        if result is None:
            try:
                connector = self._build(prepared, request, trace)
                if request.is_extension and not connector.supports_extension:
                    raise InvalidInput(
                        f"Extension lookup is not possible on connection "
                        f"{prepared.connection.name!r}: {connector.crm} has no extension field "
                        "to verify a match against.",
                        hint="Set extension_lookup = false on this connection.",
                    )

                # The cache write rides on the coalescing hand-off script (one round trip).
                pending = self.cache.pending()

                def work() -> dict[str, Any]:
                    return self._from_crm(prepared, request, connector, trace, pending)

                result = self.guard.run(prepared, request, connector, work, pending)
                self.cache.flush(pending)
            except (PermanentCRMError, InvalidInput) as exc:
                return self._finish(contact.failure(exc), trace)
        return self._finish(self._decorate(result, prepared, request), trace)

    def _build(
        self, prepared: Prepared, request: LookupRequest, trace: DebugTrace | None
    ) -> Connector:
        """The connector; ``user`` is passed only for a per-user lookup, so a connector source
        without per-user credentials (``build(connection, trace)``) keeps working."""
        if request.user:
            return self.connectors.build(prepared.connection, trace, user=request.user)
        return self.connectors.build(prepared.connection, trace)

    def cached(self, connection_name: str, request: LookupRequest) -> dict[str, Any] | None:
        """The full result when the answer is already cached, else None (one Redis GET).

        The producers' call-pop fast path: InvalidInput / ConfigError propagate so the caller
        can report why it skipped the event.
        """
        prepared = self.prepare(connection_name, request)
        contacts = self.cache.get(prepared.cache_key)
        if contacts is None:
            return None
        return self.cached_result(prepared, request, contacts)

    def cached_pop(
        self,
        connection_name: str,
        request: LookupRequest,
        telephony_session_id: str | None,
    ) -> CachedPop | None:
        """What the producers' one-script fast path needs to answer this call pop from the
        cache inside Redis (producers/pipeline.py): the cache key and the call-pop message
        cut around the cached contacts (``callpop.template``). ``request.phone_number`` is
        already normalised (the plan's E.164 number or extension digits): no parsing here.

        None when the result would depend on the contacts beyond listing them (a resolution
        strategy applies): the caller then uses ``cached``. InvalidInput / ConfigError
        propagate, as from ``cached``.
        """
        prepared = self.prepare(connection_name, request, normalised=True, terms=False)
        if request.resolve or (Purpose(request.purpose).is_logging and prepared.connection.resolve):
            return None
        # Built as ``cached_result`` builds it (real contacts, so no not-found message), with
        # the contacts replaced by the mark the template is cut at.
        shape = contact.success([{}], prepared.number, tracking={"isCached": True})
        before, after = callpop.template(
            telephony_session_id,
            request.phone_number,
            {**shape, "matchedContactInfo": callpop.CONTACTS_MARK},
        )
        extra = ""
        if prepared.connection.create_option:
            extra = "," + json.dumps(contact.placeholder(), separators=(",", ":"))
        return CachedPop(prepared, before, after, extra)

    def cached_result(
        self, prepared: Prepared, request: LookupRequest, contacts: list[dict[str, Any]]
    ) -> dict[str, Any]:
        """The full result for ``contacts`` read from the cache (the shape of ``cached``)."""
        result = contact.success(contacts, prepared.number, tracking={"isCached": True})
        return self._decorate(result, prepared, request)

    def find_contact(self, connection_name: str, request: LookupRequest) -> dict[str, Any]:
        """Like lookup, but a transient failure is a failed result too (no retry here)."""
        try:
            return self.lookup(connection_name, request)
        except ContactLookupError as exc:
            return contact.failure(exc)

    def _from_crm(
        self,
        prepared: Prepared,
        request: LookupRequest,
        connector: Connector,
        trace: DebugTrace | None = None,
        pending: Pending | None = None,
    ) -> dict[str, Any]:
        extension = request.is_extension
        try:
            outcome = connector.find(prepared.terms, extension=extension)
        except AuthRevoked:
            raise
        except AuthRejected:
            # A 401 for a token we believed valid: once, with a renewed credential (another
            # worker's refresh, or our own). A second rejection is final.
            renew = getattr(self.connectors, "renew", None)
            fresh = renew(prepared.connection, connector, trace, request.user) if renew else None
            if fresh is None:
                raise
            outcome = fresh.find(prepared.terms, extension=extension)
        if outcome.contacts and outcome.complete:
            self.cache.put(prepared.cache_key, outcome.contacts, pending)
        elif request.force_refresh:
            self.cache.delete(prepared.cache_key)  # the CRM says the cached match is stale
        tracking = outcome.rate_limit.tracking() if outcome.rate_limit else {}
        return contact.success(outcome.contacts, prepared.number, tracking=tracking)

    def _decorate(
        self, result: dict[str, Any], prepared: Prepared, request: LookupRequest
    ) -> dict[str, Any]:
        """Per-request additions that are never cached: the placeholder and the resolution."""
        conn = prepared.connection
        contacts = list(result["matchedContactInfo"])
        if conn.create_option:
            contacts.append(contact.placeholder())
        result = {**result, "matchedContactInfo": contacts}
        logging_purpose = Purpose(request.purpose).is_logging
        strategy = request.resolve or (conn.resolve if logging_purpose else None)
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
