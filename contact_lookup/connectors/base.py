"""The connector interface: one required method per CRM, everything shared in the base class.

A connector's only duty is ``search(query)``: run one phone-format query against its CRM and
return the raw records (already in the spec's field names, dates as the CRM wrote them) plus
the rate-limit state the CRM reported. ``find`` is the template around it, and owns what every
CRM shares: which queries to run, normalising each record, de-duplicating by id, and keeping
the newest rate-limit state. Vendor errors must be raised as the error tree of
``contact_lookup.model.errors``.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping, MutableMapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, Protocol

import requests

from contact_lookup.model import contact
from contact_lookup.model.config import Connection
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
    ) -> None:
        self.connection = connection
        self.secret = secret
        self.session = session or requests.Session()
        self.timeout_s = timeout_s
        self.trace = trace or DebugTrace()
        self.trace.add_secret(secret)
        # Per-connection state that outlives one lookup (e.g. a vendor login session).
        self.shared: MutableMapping[str, Any] = shared if shared is not None else {}

    def plan(self, queries: list[str]) -> list[str]:
        """The queries to send. Override where the vendor's matching makes some redundant."""
        return queries

    @abstractmethod
    def search(self, query: str) -> SearchPage:
        """Run one query. Raise RateLimited, CRMUnavailable, AuthRejected or BadQuery."""

    def find(self, queries: list[str]) -> FindOutcome:
        """Every planned query in order; contacts normalised and de-duplicated by id."""
        found: list[dict[str, Any]] = []
        rate_limit: RateLimitState | None = None
        planned = self.plan(queries)
        for query in planned:
            page = self.search(query)
            found.extend(contact.from_record(record, query) for record in page.records)
            rate_limit = page.rate_limit or rate_limit
        return FindOutcome(contact.dedupe(found), rate_limit, planned)


class ConnectorSource(Protocol):
    """What the core needs to get a connector: build one for a connection (per lookup)."""

    def build(self, connection: Connection, trace: DebugTrace | None = None) -> Connector: ...
