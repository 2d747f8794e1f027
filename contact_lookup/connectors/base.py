"""The connector interface: one required method per CRM, everything shared in the base class.

A connector's only duty is ``search(query)``: run one phone-format query against its CRM and
return the raw records (already in the spec's field names, dates as the CRM wrote them) plus
the rate-limit state the CRM reported. ``find`` is the template around it, and owns what every
CRM shares: which queries to run, normalising each record, de-duplicating by id, and keeping
the newest rate-limit state. Vendor errors must be raised as the error tree of
``contact_lookup.model.errors``.
"""

from __future__ import annotations

import threading
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, MutableMapping, Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import Any, ClassVar, Protocol

import requests

from contact_lookup.connectors.fanout import fan_out
from contact_lookup.model import contact, phone
from contact_lookup.model.config import MAX_CONCURRENCY_CAP, Connection
from contact_lookup.model.credential import Credential
from contact_lookup.model.errors import RateLimitState
from contact_lookup.model.trace import DebugTrace


@dataclass(frozen=True)
class Option:
    """One connector-specific key of a connection table.

    ``kind`` is the TOML type (``int``, ``float``, ``str``, ``bool``); ``minimum``/``maximum``
    bound numbers; ``choices`` lists the allowed strings; ``pattern`` is a regular expression
    a string must match in full. ``help`` is shown by ``contact-lookup connectors list``.
    """

    kind: type | tuple[type, ...]
    help: str = ""
    default: Any = None
    minimum: float | None = None
    maximum: float | None = None
    choices: tuple[str, ...] = ()
    pattern: str | None = None

    @property
    def kinds(self) -> tuple[type, ...]:
        """The accepted Python types (a TOML integer is accepted where a float is)."""
        if isinstance(self.kind, tuple):
            return self.kind
        return (int, float) if self.kind is float else (self.kind,)

    def check(self, connection: str, key: str, value: Any) -> None:
        """ConfigError naming the connection, key and rule when ``value`` does not fit."""
        import re

        from contact_lookup.model.errors import ConfigError

        where = f"connection {connection!r}: {key}"
        kinds = self.kinds
        if (isinstance(value, bool) and bool not in kinds) or not isinstance(value, kinds):
            names = " or ".join(k.__name__ for k in kinds if k is not int or float not in kinds)
            raise ConfigError(f"{where} must be a {names} (got {value!r})")
        if isinstance(value, int | float):
            if self.minimum is not None and value < self.minimum:
                raise ConfigError(f"{where} must be at least {self.minimum:g} (got {value!r})")
            if self.maximum is not None and value > self.maximum:
                raise ConfigError(f"{where} must be at most {self.maximum:g} (got {value!r})")
        items = value if isinstance(value, list) else [value]
        if self.choices and any(not isinstance(v, str) or v not in self.choices for v in items):
            raise ConfigError(f"{where} must be one of {', '.join(self.choices)} (got {value!r})")
        if self.pattern is not None and not re.fullmatch(self.pattern, str(value)):
            raise ConfigError(f"{where} must match {self.pattern!r} (got {value!r})")


# Keys a connector adds to each record of a SearchPage besides the spec's fields: the record's
# phone values as stored (every phone field the vendor has), and its extension values.
PHONES = "phones"
EXTENSIONS = "extensions"


@dataclass
class SearchPage:
    """What one query returned: records in spec field names, and the CRM's rate-limit state.

    Each record also carries ``phones`` (list of str: every phone value the CRM holds for it,
    as stored) and, for connectors with ``supports_extension``, ``extensions``. ``find``
    verifies a record against them; a record without them is never a match.
    """

    records: Sequence[Mapping[str, Any]] = field(default_factory=list)
    rate_limit: RateLimitState | None = None


@dataclass(frozen=True)
class Search:
    """One independent CRM call of a lookup: ``run()`` sends it (with the pages or reads that
    depend on its answer) and returns its records. ``query`` is the phone term it searched
    for: the records' ``phone`` when they carry none, and their place in the spec's order;
    None for a search that ORs several terms."""

    query: str | None
    run: Callable[[], SearchPage]


@dataclass
class FindOutcome:
    """A lookup's contacts; ``dropped`` counts records the CRM returned that were no match;
    ``complete`` is False when the connector knows some contact lacks a field the CRM holds
    (the answer must then not be cached)."""

    contacts: list[dict[str, Any]]
    rate_limit: RateLimitState | None = None
    queries: list[str] = field(default_factory=list)
    dropped: int = 0
    complete: bool = True


class RequestBudget(Protocol):
    """What pays for a lookup's CRM requests (the guard hands one in; see core/guard.py).

    ``take(n)`` is called before ``n`` requests are sent and raises ``RateLimited`` when the
    shared budget cannot cover them, so no request goes out unpaid; ``observe(state)`` is
    called with what each response said of the vendor's own limit.
    """

    def take(self, requests: int = 1) -> None: ...

    def observe(self, state: RateLimitState | None) -> None: ...


class Unmetered:
    """The budget of a connection that is not rate limited: every request is free."""

    def take(self, requests: int = 1) -> None:
        return None

    def observe(self, state: RateLimitState | None) -> None:
        return None


UNMETERED = Unmetered()


class Connector(ABC):
    """Base of every CRM connector. Built per lookup; cheap (sessions are pooled elsewhere)."""

    crm: ClassVar[str]
    # CRM requests one planned query costs at least: the guard takes this many tokens per
    # planned query up front; any further request (pages, reads) is paid when it is sent.
    requests_per_query: ClassVar[int] = 1
    # The vendor's published limit of the search call: (requests, window in seconds).
    default_rate_limit: ClassVar[tuple[int, float] | None] = None
    # Connector-specific keys of a connection table (see ``Option``).
    options: ClassVar[Mapping[str, Option]] = {}
    # The spec's additionalInfo (findContact: "object keyed by manifest additionalFields[].const
    # values ... contact-dependent options such as matters, deals, or opportunities"): the
    # names a connection may list in ``additional_fields``, each with what it holds.
    additional_fields: ClassVar[Mapping[str, str]] = {}
    # Whether the CRM stores extension numbers in a field of its own (records then carry
    # ``extensions``). Without one an extension lookup is refused: nothing could verify it.
    supports_extension: ClassVar[bool] = False
    # Requests of one connection in flight at once from one worker process, unless the
    # connection sets ``max_concurrency``. Each vendor states its documented limit (or that
    # none is documented) beside its own value. Where none is published, the cap: the
    # shared rate limit is then what bounds the requests, and a lower default would make a
    # worker with many threads send fewer requests at once than it did one at a time.
    default_max_concurrency: ClassVar[int] = MAX_CONCURRENCY_CAP

    @classmethod
    def check_connection(cls, connection: Connection) -> None:
        """Load-time checks beyond each option's own (ConfigError); e.g. a template's rules."""
        return None

    def __init__(
        self,
        connection: Connection,
        *,
        secret: str | None = None,
        session: requests.Session | None = None,
        timeout_s: float = 10.0,
        trace: DebugTrace | None = None,
        shared: MutableMapping[str, Any] | None = None,
        sessions: Callable[[], requests.Session] | None = None,
    ) -> None:
        self.connection = connection
        self.secret = secret
        self.session = session or requests.Session()
        # The current thread's pooled keep-alive session (fan-out runs requests on several
        # threads, and a requests.Session is not thread-safe); None: ``session`` everywhere.
        self._sessions = sessions
        self.timeout_s = timeout_s
        self.trace = trace or DebugTrace(keep=False)  # no debug: nothing recorded
        self.trace.add_secret(secret)
        # Per-connection state that outlives one lookup (e.g. a vendor login session).
        self.shared: MutableMapping[str, Any] = shared if shared is not None else {}
        # Pays for each CRM request before it is sent (the guard replaces it per lookup).
        self.budget: RequestBudget = UNMETERED

    @property
    def http_session(self) -> requests.Session:
        """The HTTP session for a request sent from the current thread."""
        return self._sessions() if self._sessions is not None else self.session

    @property
    def max_concurrency(self) -> int:
        """The connection's ``max_concurrency``, else the vendor default of the class."""
        return self.connection.max_concurrency or self.default_max_concurrency

    @property
    def gate(self) -> threading.Semaphore:
        """The connection's in-flight bound in this process (one per connection, in ``shared``)."""
        key = f"fanout.gate.{self.max_concurrency}"
        # dict.setdefault is atomic under the GIL: every thread gets the same semaphore.
        gate: threading.Semaphore = self.shared.setdefault(
            key, threading.Semaphore(self.max_concurrency)
        )
        return gate

    def plan(self, queries: list[str]) -> list[str]:
        """The queries to send. Override where the vendor's matching makes some redundant."""
        return queries

    def searches(self, planned: list[str]) -> list[Search]:
        """The lookup's independent CRM calls, in the spec's order: one ``search`` per planned
        query by default. Override to split a query per entity or field, or to fold several
        queries into one request where the vendor's query language ORs them."""
        return [Search(query, partial(self.search, query)) for query in planned]

    def request_count(self, planned: list[str]) -> int:
        """CRM requests the lookup makes before any paging (what the guard takes up front)."""
        return len(planned) * self.requests_per_query

    @abstractmethod
    def search(self, query: str) -> SearchPage:
        """Run one query. Raise RateLimited, CRMUnavailable, AuthRejected or BadQuery."""

    def find(self, queries: list[str], *, extension: bool = False) -> FindOutcome:
        """Every planned query in order; only verified matches, normalised, de-duplicated.

        ``queries`` are the spec's terms: the E.164 number first, then each formatted variant
        (or the extension alone when ``extension``). A record the CRM returned is a match only
        when ``verify`` finds the number among its phone values; the others are dropped and
        counted in the debug trace. Vendor searches are wider than equality (Pipedrive's
        contains, Clio's wildcard over names and addresses, Salesforce's SOSL tokens), and a
        wrong contact is worse than none: it is cached and popped while the phone rings.
        """
        found: list[tuple[int, dict[str, Any]]] = []
        rate_limit: RateLimitState | None = None
        dropped = 0
        self.lookup_terms, self.lookup_extension = list(queries), extension
        planned = self.plan(queries)
        # Sent concurrently (fanout.fan_out, at most max_concurrency in flight); any failed
        # search fails the whole find. Order (spec: E.164 first, then formats): a contact ranks
        # by the query that found it, or by the first query equal to its matched value where
        # that is earlier (a search that ORs several terms); ties keep the searches' order.
        searches = self.searches(planned)
        pages = fan_out([s.run for s in searches], self.max_concurrency, gate=self.gate)
        rank = {query: i for i, query in reversed(list(enumerate(queries)))}
        for search, page in zip(searches, pages, strict=True):
            by_query = rank.get(search.query or "", len(queries))
            for record in page.records:
                matched = self.verify(record, queries, extension=extension)
                if matched is None:
                    dropped += 1
                    continue
                found_contact = contact.from_record(
                    {**record, "phone": matched}, search.query or ""
                )
                found.append((min(by_query, rank.get(matched, len(queries))), found_contact))
            rate_limit = newest_state(rate_limit, page.rate_limit)
        found.sort(key=lambda pair: pair[0])  # stable: the CRM's order within one rank
        if dropped:
            self.trace.note(
                "unverified",
                count=dropped,
                reason="the CRM returned records whose phone values are not the number",
            )
        contacts = contact.dedupe(c for _, c in found)
        wanted = self.connection.options.get("additional_fields") or []
        for match in contacts if wanted else []:
            match["additionalInfo"] = {name: self.additional_info(name, match) for name in wanted}
        return FindOutcome(contacts, rate_limit, planned, dropped, complete=self.complete)

    def additional_info(self, name: str, match: Mapping[str, Any]) -> list[dict[str, Any]]:
        """The options of one ``additional_fields`` name for a verified match: a list of
        ``{"const": str, "title": str, "id": vendor id}``. Each request it sends is paid for
        through ``budget`` and recorded in the debug trace like any other."""
        raise NotImplementedError(f"{self.crm} has no additional field {name!r}")

    # True unless the connector knows its answer lacks something the CRM holds (it stopped
    # paging at its page cap, say); the service then does not cache the answer.
    complete: bool = True

    # The lookup ``find`` is running (for ``holds_number`` during ``search``).
    lookup_terms: list[str] = []
    lookup_extension: bool = False

    def holds_number(self, phones: Sequence[object]) -> bool:
        """Whether a record with these phone values will pass ``verify`` in this lookup: lets
        a connector skip enrichment requests (dates, additional info) for records that will be
        dropped. True outside ``find`` (nothing to check against)."""
        if not self.lookup_terms:
            return True
        record = {EXTENSIONS if self.lookup_extension else PHONES: list(phones)}
        return self.verify(record, self.lookup_terms, extension=self.lookup_extension) is not None

    def verify(
        self, record: Mapping[str, Any], queries: Sequence[str], *, extension: bool = False
    ) -> str | None:
        """The stored value that makes ``record`` a match, or None (see ``phone.matching_value``).

        Phone lookups: one of the record's ``phones``, read in the connection's region, is the
        E.164 number ``queries[0]``, or equals one of ``queries`` exactly. Extension lookups:
        one of its ``extensions`` equals the extension.
        """
        if extension:
            return phone.matching_extension(record.get(EXTENSIONS) or (), queries[0])
        values = record.get(PHONES) or ()
        return phone.matching_value(values, queries[0], self.connection.region, queries)


def newest_state(
    earlier: RateLimitState | None, later: RateLimitState | None
) -> RateLimitState | None:
    """The newer of two rate-limit states of one lookup's concurrent responses.

    Responses answered concurrently arrive in any order: the newest is the one that reports
    the fewest requests remaining in the latest window (the later reset); without counts,
    the later one in the spec's order.
    """
    if earlier is None or later is None:
        return later or earlier
    # Resets within a second are one window (a reset sent as seconds-left is made epoch
    # seconds on arrival, so it drifts by the arrival times).
    if abs((earlier.reset or 0) - (later.reset or 0)) >= 1.0:
        return later if (later.reset or 0) > (earlier.reset or 0) else earlier
    if earlier.remaining is not None and later.remaining is not None:
        return later if later.remaining <= earlier.remaining else earlier
    return later


class ConnectorSource(Protocol):
    """What the core needs to get a connector: build one for a connection (per lookup).

    ``user`` (a RingCentral extension id) is passed only for per-user lookups: a source without
    per-user credentials may define ``build(connection, trace)`` alone. A source may also offer
    ``renew(connection, connector, trace=None, user=None)``: a
    connector with a fresh credential after the CRM rejected ``connector``'s (None when there
    is nothing fresher to try); the core calls it once per lookup on ``AuthRejected``."""

    def build(
        self, connection: Connection, trace: DebugTrace | None = None, *, user: str | None = None
    ) -> Connector: ...


class CredentialSource(Protocol):
    """Where a connection's prepared credential comes from when it is not a static
    ``token_env`` (the OAuth token store, ``contact_lookup.auth.manager.TokenManager``)."""

    def get(self, connection: Connection, user: str | None = None) -> Credential: ...

    def renew(
        self, connection: Connection, rejected: str | None, user: str | None = None
    ) -> Credential: ...
