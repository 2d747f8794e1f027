"""``crm = "bullhorn"``: Bullhorn REST, a session API searched with Lucene.

Connection: ``base_url`` is the login host of the user's data centre (what
``GET rest-services/loginInfo?username=...`` names, e.g. ``https://rest.bullhornstaffing.com``);
``token_env`` names the variable holding an OAuth access token. Option ``page_size`` (1-500,
default 100) is the search ``count``.

Session: ``GET {base_url}/rest-services/login?version=*&access_token=T`` answers
``{BhRestToken, restUrl}``. The session is kept in ``self.shared`` (one per connection, shared
by every worker thread and lookup) and sent as the ``BhRestToken`` header. When Bullhorn
answers 401 (``errors.authentication.invalidRestToken``: the session timed out) the connector
logs in again once, under a lock so that concurrent threads make one login between them, and
retries; a second 401 is ``AuthRejected``. The session token is added to the debug trace's
secrets, and the access token travels only in the login URL, which the trace redacts.

Search: a lookup is one search per entity, whatever the number of formats: every phone field
of every term ORed, ``(phone:"N" OR mobile:"N" OR ... OR phone3:"F2") AND isDeleted:false``,
posted to ``search/ClientContact``, ``search/Candidate`` and ``search/Lead`` (3 requests, sent
concurrently by ``Connector.find``), each followed through ``start``/``total`` for at most
``MAX_PAGES`` pages per term: a phone number shared by more records than that is a
switchboard, not a person to pop. Bullhorn's search takes Lucene syntax with ``OR`` and
grouping (bullhorn/rest-api-docs ``_search.md``, "Lucene query syntax"), so the union of the
terms is exactly what the separate searches would find.

Matching: Lucene term match on the stored string, so every formatted variant is a different
term and ``plan`` keeps them all (the base behaviour). Each hit's ``phone`` is the first term
(in the spec's order) equal to one of its phone fields, so ``find`` ranks it as the separate
searches would.

Errors: 429 -> ``RateLimited(retry_after_s=1.0)`` (Bullhorn sends no headers; its message and
its SDK say wait one second and retry: supportforums.bullhorn.com viewtopic t=34864); login
refused -> ``AuthRejected``; the rest as ``HttpConnector.check``.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from dataclasses import dataclass
from functools import partial
from typing import Any

import requests

from contact_lookup.connectors.base import Option, Search, SearchPage
from contact_lookup.connectors.http import HttpConnector, retry_after_seconds
from contact_lookup.model.config import MAX_CONCURRENCY_CAP
from contact_lookup.model.errors import AuthRejected, CRMUnavailable

PHONE_FIELDS = ("phone", "mobile", "phone2", "phone3")
_COMMON = "id,name,firstName,lastName,email,occupation,dateAdded,dateLastModified," + ",".join(
    PHONE_FIELDS
)
# Per entity: the fields to ask for, and the spec ``type`` the contact is reported as.
ENTITIES = {
    "ClientContact": (f"{_COMMON},clientCorporation(name)", "Contact"),
    "Candidate": (f"{_COMMON},companyName", "Candidate"),
    "Lead": (f"{_COMMON},companyName", "Lead"),
}
DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE = 100, 500  # Bullhorn caps a search page at 500 records
MAX_PAGES = 5
RATE_LIMIT_WAIT_S = 1.0
_SESSION, _LOCK = "bullhorn.session", "bullhorn.lock"


@dataclass(frozen=True)
class BhSession:
    token: str
    rest_url: str  # ends with "/"


def lucene_query(*numbers: str) -> str:
    """The search for any of the phone strings in any phone field: each quoted, so
    ``+ ( ) -`` are not Lucene syntax."""
    values = ['"' + n.replace("\\", "\\\\").replace('"', '\\"') + '"' for n in numbers]
    either = " OR ".join(f"{field}:{value}" for value in values for field in PHONE_FIELDS)
    return f"({either}) AND isDeleted:false"


def matched_phone(item: Mapping[str, Any], terms: tuple[str, ...]) -> str | None:
    """The first term equal to one of the hit's phone fields, else its first phone value."""
    stored = [item.get(field) for field in PHONE_FIELDS]
    stored = [value for value in stored if isinstance(value, str) and value]
    return next((term for term in terms if term in stored), stored[0] if stored else None)


def to_contact(entity: str, item: Any, terms: tuple[str, ...] = ()) -> dict[str, Any]:
    """One search hit in the spec's field names; dates stay epoch milliseconds; ``phone`` is
    the term it matched (``matched_phone``)."""
    if not isinstance(item, Mapping):
        raise CRMUnavailable("Bullhorn returned a search hit that is not an object.")
    corp = item.get("clientCorporation")
    company = corp.get("name") if isinstance(corp, Mapping) else item.get("companyName")
    name = (
        item.get("name")
        or " ".join(str(p) for p in (item.get("firstName"), item.get("lastName")) if p)
        or None
    )
    return {
        "id": item.get("id"),
        "name": name,
        "phone": matched_phone(item, terms),
        "type": ENTITIES[entity][1],
        "title": item.get("occupation"),
        "company": company,
        "email": item.get("email"),
        "createdDate": item.get("dateAdded"),
        # No last-activity field is common to the three entities; the last change is the
        # reference connector's choice (updated_at) too.
        "mostRecentActivityDate": item.get("dateLastModified"),
    }


class BullhornConnector(HttpConnector):
    crm = "bullhorn"
    default_rate_limit = (10, 1.0)  # none documented: a conservative guess
    options = {
        "page_size": Option(int, "records per search page", DEFAULT_PAGE_SIZE, 1, MAX_PAGE_SIZE),
    }
    requests_per_query = 3  # one search per entity: ClientContact, Candidate, Lead
    # Bullhorn limits concurrent API sessions (25 or 50 by edition: kb.bullhorn.com,
    # "Understanding API Usage Limits"), not concurrent requests in one session (we keep one
    # session per connection): no request limit to follow, the base default.
    default_max_concurrency = MAX_CONCURRENCY_CAP

    def search(self, query: str) -> SearchPage:
        records: list[dict[str, Any]] = []
        for entity in ENTITIES:
            records.extend(self._search_entity(entity, (query,)))
        return SearchPage(records)

    def searches(self, planned: list[str]) -> list[Search]:
        """One search per entity ORing every planned term (see the module docstring)."""
        if not planned:
            return []
        terms = tuple(planned)
        return [Search(None, partial(self._entity_page, entity, terms)) for entity in ENTITIES]

    def request_count(self, planned: list[str]) -> int:
        return len(ENTITIES) if planned else 0

    def retry_after(self, resp: requests.Response) -> float | None:
        wait = retry_after_seconds(resp.headers.get("Retry-After"))
        return RATE_LIMIT_WAIT_S if wait is None else wait

    # ----- search ----------------------------------------------------------------------------
    def _entity_page(self, entity: str, terms: tuple[str, ...]) -> SearchPage:
        return SearchPage(self._search_entity(entity, terms))

    def _search_entity(self, entity: str, terms: tuple[str, ...]) -> list[dict[str, Any]]:
        size = self.int_option("page_size", DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE)
        lucene = lucene_query(*terms)
        found: list[dict[str, Any]] = []
        start = 0
        for _ in range(MAX_PAGES * len(terms)):
            body = self._call(
                "POST",
                f"search/{entity}",
                json={"query": lucene},
                params={"fields": ENTITIES[entity][0], "start": start, "count": size},
            )
            data = body.get("data") if isinstance(body, Mapping) else None
            if not isinstance(data, list):
                raise CRMUnavailable("Bullhorn answered a search without its data list.")
            found.extend(to_contact(entity, item, terms) for item in data)
            start += len(data)
            total = body.get("total")
            if (
                not data
                or (total is None and len(data) < size)
                or (isinstance(total, int) and start >= total)
            ):
                break
        return found

    # ----- session -----------------------------------------------------------------------------
    def _call(self, method: str, path: str, **kwargs: Any) -> Any:
        """One REST call in the current session; an expired session is renewed once."""
        session = self._session()
        resp = self._send(session, method, path, **kwargs)
        if resp.status_code == 401:
            session = self._login(stale=session)
            resp = self._send(session, method, path, **kwargs)
            if resp.status_code == 401:
                raise AuthRejected(
                    "Bullhorn rejected a session it had just opened.", status_code=401
                )
        self.check(resp)
        return self.json_body(resp)

    def _send(self, session: BhSession, method: str, path: str, **kwargs: Any) -> requests.Response:
        return self.request(
            method, session.rest_url + path, headers={"BhRestToken": session.token}, **kwargs
        )

    @property
    def _lock(self) -> Any:
        # dict.setdefault is atomic under the GIL: every thread gets the same lock.
        return self.shared.setdefault(_LOCK, threading.Lock())

    def _session(self) -> BhSession:
        session = self.shared.get(_SESSION)
        if not isinstance(session, BhSession):
            session = self._login(stale=None)
        self.trace.add_secret(session.token)  # this lookup's trace may be new
        return session

    def _login(self, stale: BhSession | None) -> BhSession:
        """A fresh session, unless another thread replaced ``stale`` while we waited."""
        with self._lock:
            current = self.shared.get(_SESSION)
            if isinstance(current, BhSession) and current != stale:
                return current
            fresh = self._open_session()
            self.shared[_SESSION] = fresh
            return fresh

    def _open_session(self) -> BhSession:
        if not self.secret:
            raise AuthRejected(
                "No Bullhorn access token is configured (token_env).", status_code=None
            )
        resp = self.request(
            "GET", "/rest-services/login", params={"version": "*", "access_token": self.secret}
        )
        if resp.status_code in (400, 401, 403):
            raise AuthRejected(
                "Bullhorn refused the login (access token wrong or expired).",
                status_code=resp.status_code,
            )
        self.check(resp)
        body = self.json_body(resp)
        token = body.get("BhRestToken") if isinstance(body, Mapping) else None
        rest_url = body.get("restUrl") if isinstance(body, Mapping) else None
        if (
            not isinstance(token, str)
            or not token
            or not isinstance(rest_url, str)
            or (not rest_url.startswith(("http://", "https://")))
        ):
            raise CRMUnavailable(
                "Bullhorn's login answer had no BhRestToken or restUrl.",
                status_code=resp.status_code,
            )
        self.trace.add_secret(token)
        return BhSession(token, rest_url if rest_url.endswith("/") else rest_url + "/")
