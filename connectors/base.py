"""The connector interface: one required method per CRM, everything shared in the base class.

A connector's only duty is ``search(query)``: run one phone-format query against its CRM and
return the raw records (already in the spec's field names, dates as the CRM wrote them) plus
the rate-limit state the CRM reported. ``find`` is the template around it, and owns what every
CRM shares: which queries to run, normalising each record, de-duplicating by id, and keeping
the newest rate-limit state. Vendor errors must be raised as the ``lookup.errors`` tree.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping, MutableMapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

import requests

from lookup import contact
from lookup.config import Connection
from lookup.errors import RateLimitState
from lookup.trace import DebugTrace


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
            found.extend(contact.normalise(record, query) for record in page.records)
            rate_limit = page.rate_limit or rate_limit
        return FindOutcome(contact.dedupe(found), rate_limit, planned)
