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
from contact_lookup.model import contact
from contact_lookup.model.config import MAX_CONCURRENCY_CAP, Connection
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
        if self.choices and value not in self.choices:
            raise ConfigError(f"{where} must be one of {', '.join(self.choices)} (got {value!r})")
        if self.pattern is not None and not re.fullmatch(self.pattern, str(value)):
            raise ConfigError(f"{where} must match {self.pattern!r} (got {value!r})")


@dataclass
class SearchPage:
    """What one query returned: records in spec field names, and the CRM's rate-limit state."""

    records: Sequence[Mapping[str, Any]] = field(default_factory=list)
    rate_limit: RateLimitState | None = None


@dataclass(frozen=True)
class Search:
    """One independent CRM call of a lookup: ``run()`` sends it (with the pages or reads that
    depend on its answer) and returns its records. ``query`` is the phone term it searched
    for: the records' ``phone`` when they carry none, and their place in the spec's order;
    None for a search that ORs several terms, whose records must carry their ``phone``."""

    query: str | None
    run: Callable[[], SearchPage]


@dataclass
class FindOutcome:
    contacts: list[dict[str, Any]]
    rate_limit: RateLimitState | None = None
    queries: list[str] = field(default_factory=list)


class Connector(ABC):
    """Base of every CRM connector. Built per lookup; cheap (sessions are pooled elsewhere)."""

    crm: ClassVar[str]
    # CRM requests one planned query costs (the shared limiter takes this many tokens each).
    requests_per_query: ClassVar[int] = 1
    # The vendor's published limit of the search call: (requests, window in seconds).
    default_rate_limit: ClassVar[tuple[int, float] | None] = None
    # Connector-specific keys of a connection table (see ``Option``).
    options: ClassVar[Mapping[str, Option]] = {}
    # Requests of one connection in flight at once from one worker process, unless the
    # connection sets ``max_concurrency``. Each vendor states its documented limit (or that
    # none is documented) beside its own value. Where none is published, the cap: the
    # shared rate limit is then what bounds the requests, and a lower default would make a
    # worker with many threads send fewer requests at once than it did one at a time.
    default_max_concurrency: ClassVar[int] = MAX_CONCURRENCY_CAP

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
        self.trace = trace or DebugTrace()
        self.trace.add_secret(secret)
        # Per-connection state that outlives one lookup (e.g. a vendor login session).
        self.shared: MutableMapping[str, Any] = shared if shared is not None else {}

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
        """CRM requests the lookup makes before any paging (what the shared limiter charges)."""
        return len(planned) * self.requests_per_query

    @abstractmethod
    def search(self, query: str) -> SearchPage:
        """Run one query. Raise RateLimited, CRMUnavailable, AuthRejected or BadQuery."""

    def find(self, queries: list[str]) -> FindOutcome:
        """Every planned search, sent concurrently (``fanout.fan_out``, at most
        ``max_concurrency`` in flight); contacts normalised, in the spec's order and
        de-duplicated by id. Any failed search fails the whole find (nothing partial).

        Order (spec: E.164 first, then formats): a contact ranks by the query that found it,
        or by the first of ``queries`` equal to its ``phone`` where that is earlier (a search
        that ORs several terms); ties keep the order of the searches, then the CRM's.
        """
        planned = self.plan(queries)
        searches = self.searches(planned)
        pages = fan_out([s.run for s in searches], self.max_concurrency, gate=self.gate)
        rank = {query: i for i, query in reversed(list(enumerate(queries)))}
        found: list[tuple[int, dict[str, Any]]] = []
        rate_limit: RateLimitState | None = None
        for search, page in zip(searches, pages, strict=True):
            by_query = rank.get(search.query or "", len(queries))
            for record in page.records:
                found_contact = contact.from_record(record, search.query or "")
                by_phone = rank.get(found_contact["phone"], len(queries))
                found.append((min(by_query, by_phone), found_contact))
            rate_limit = newest_state(rate_limit, page.rate_limit)
        found.sort(key=lambda pair: pair[0])  # stable: the CRM's order within one rank
        return FindOutcome(contact.dedupe(c for _, c in found), rate_limit, planned)


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
    if (earlier.reset or 0) != (later.reset or 0):
        return later if (later.reset or 0) > (earlier.reset or 0) else earlier
    if earlier.remaining is not None and later.remaining is not None:
        return later if later.remaining <= earlier.remaining else earlier
    return later


class ConnectorSource(Protocol):
    """What the core needs to get a connector: build one for a connection (per lookup)."""

    def build(self, connection: Connection, trace: DebugTrace | None = None) -> Connector: ...
