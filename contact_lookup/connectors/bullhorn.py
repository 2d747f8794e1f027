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

Search: one query is ``(phone:"N" OR mobile:"N" OR phone2:"N" OR phone3:"N") AND
isDeleted:false`` posted to ``search/ClientContact``, ``search/Candidate`` and ``search/Lead``,
each followed through ``start``/``total`` for at most ``MAX_PAGES`` pages: a phone number
shared by more records than that is a switchboard, not a person to pop.

Matching: Bullhorn's index analyses phone values into tokens, and a quoted value is a phrase
of its tokens (bullhorn/rest-api-docs ``_search.md``: "performed against a Lucene index").
``+14155550100`` (one token) and ``(415) 555-0100`` (three) are different phrases, so ``plan``
keeps every formatted variant (the base behaviour); and a national variant such as
``2079460958`` also finds ``+44 2079460958``: hits are only candidates, which the base
class's verification keeps or drops.

Additional fields: ``job_orders`` and ``placements`` (``BullhornConnector.additional_info``).

Errors: 429 -> ``RateLimited``: the wait from ``Retry-After`` or the ``ratelimit-reset``
header where sent, else 1 s (Bullhorn's message and its SDK say wait one second and retry:
supportforums.bullhorn.com viewtopic t=34864); login
refused -> ``AuthRejected``; the rest as ``HttpConnector.check``.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any

import requests

from contact_lookup.connectors.base import PHONES, Option, Search, SearchPage, newest_state
from contact_lookup.connectors.http import HttpConnector, retry_after_seconds
from contact_lookup.model.config import MAX_CONCURRENCY_CAP
from contact_lookup.model.errors import AuthRejected, CRMUnavailable, RateLimitState

PHONE_FIELDS = ("phone", "mobile", "phone2", "phone3")
# Per entity: the phone fields searched and verified (Candidate also has ``workPhone``, which
# RingCentral's App Connect Bullhorn connector searches), and the status that marks a record
# App Connect excludes (ClientContact ``Archive``, Candidate ``Archived``, Lead ``Converted``).
ENTITY_PHONES = {
    "ClientContact": PHONE_FIELDS,
    "Candidate": (*PHONE_FIELDS, "workPhone"),
    "Lead": PHONE_FIELDS,
}
EXCLUDED_STATUS = {"ClientContact": "Archive", "Candidate": "Archived", "Lead": "Converted"}
_COMMON = "id,name,firstName,lastName,email,occupation,dateAdded,dateLastModified,status"
# Per entity: the fields to ask for, and the spec ``type`` the contact is reported as.
ENTITIES = {
    "ClientContact": (
        f"{_COMMON},{','.join(ENTITY_PHONES['ClientContact'])},clientCorporation(name)",
        "Contact",
    ),
    "Candidate": (f"{_COMMON},{','.join(ENTITY_PHONES['Candidate'])},companyName", "Candidate"),
    "Lead": (f"{_COMMON},{','.join(ENTITY_PHONES['Lead'])},companyName", "Lead"),
}
DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE = 100, 500  # Bullhorn caps a search page at 500 records
MAX_PAGES = 5
RATE_LIMIT_WAIT_S = 1.0
# additional_fields: the entity searched, its fields, and per matched entity the Lucene query
# that links it to the match (see ``BullhornConnector.additional_info``).
ENDED_PLACEMENT = ("Completed", "Terminated")
_NOT_ENDED = " ".join(f'AND NOT status:"{s}"' for s in ENDED_PLACEMENT)
LINKED: dict[str, tuple[str, str, dict[str, str]]] = {
    "job_orders": (
        "JobOrder",
        "id,title",
        {"ClientContact": "clientContact.id:{id} AND isOpen:true"},
    ),
    "placements": (
        "Placement",
        "id,status,jobOrder(id,title),candidate(id,firstName,lastName)",
        {
            "Candidate": f"candidate.id:{{id}} {_NOT_ENDED}",
            "ClientContact": f"jobOrder.clientContact.id:{{id}} {_NOT_ENDED}",
        },
    ),
}
LINKED_MAX = 100
_SESSION, _LOCK = "bullhorn.session", "bullhorn.lock"


@dataclass(frozen=True)
class BhSession:
    token: str
    rest_url: str  # ends with "/"


def lucene_query(number: str | Sequence[str], entity: str = "ClientContact") -> str:
    """The search for one phone string, or any of several, in any phone field of ``entity``:
    each quoted, so ``+ ( ) -`` are not Lucene syntax; deleted records and the entity's
    excluded status left out. Bullhorn's search takes Lucene's ``OR`` and grouping
    (bullhorn/rest-api-docs ``_search.md``), so several numbers are one request that finds
    what one request per number would."""
    numbers = [number] if isinstance(number, str) else list(number)
    values = ['"' + n.replace("\\", "\\\\").replace('"', '\\"') + '"' for n in numbers]
    either = " OR ".join(f"{field}:{v}" for v in values for field in ENTITY_PHONES[entity])
    return f'({either}) AND isDeleted:false AND NOT status:"{EXCLUDED_STATUS[entity]}"'


def to_contact(entity: str, item: Any) -> dict[str, Any]:
    """One search hit in the spec's field names; dates stay epoch milliseconds."""
    if not isinstance(item, Mapping):
        raise CRMUnavailable("Bullhorn returned a search hit that is not an object.")
    corp = item.get("clientCorporation")
    company = corp.get("name") if isinstance(corp, Mapping) else item.get("companyName")
    name = (
        item.get("name")
        or " ".join(str(p) for p in (item.get("firstName"), item.get("lastName")) if p)
        or None
    )
    status = item.get("status")
    if isinstance(status, str) and status.lower() == EXCLUDED_STATUS[entity].lower():
        phones: list[Any] = []  # archived or converted: never a match, whatever the index said
    else:
        phones = [item.get(f) for f in ENTITY_PHONES[entity]]
    return {
        "id": item.get("id"),
        "name": name,
        PHONES: phones,
        "type": ENTITIES[entity][1],
        "title": item.get("occupation"),
        "company": company,
        "email": item.get("email"),
        "createdDate": item.get("dateAdded"),
        # No last-activity field is common to the three entities; the last change is the
        # reference connector's choice (updated_at) too.
        "mostRecentActivityDate": item.get("dateLastModified"),
    }


def linked_title(name: str, entity: str, item: Mapping[str, Any]) -> Any:
    """A job order's title; a placement's job title (and, for a ClientContact, who was
    placed)."""
    if name == "job_orders":
        return item.get("title")
    job = item.get("jobOrder")
    title = job.get("title") if isinstance(job, Mapping) else None
    who = item.get("candidate")
    if entity == "ClientContact" and isinstance(who, Mapping):
        person = " ".join(str(p) for p in (who.get("firstName"), who.get("lastName")) if p)
        if person:
            return f"{title}: {person}" if title else person
    return title


class BullhornConnector(HttpConnector):
    crm = "bullhorn"
    default_rate_limit = (10, 1.0)  # none documented: a conservative guess
    options = {
        "page_size": Option(int, "records per search page", DEFAULT_PAGE_SIZE, 1, MAX_PAGE_SIZE),
        "additional_fields": Option(
            list,
            "additionalInfo to fetch for each match: job_orders, placements",
            [],
            choices=("job_orders", "placements"),
        ),
    }
    requests_per_query = 3  # one search per entity: ClientContact, Candidate, Lead
    additional_fields = {
        "job_orders": "a ClientContact's open job orders",
        "placements": "a Candidate's placements, or those of a ClientContact's job orders "
        "(not Completed or Terminated)",
    }
    _state: RateLimitState | None = None  # the newest ratelimit-* headers seen
    _state_lock = threading.Lock()  # shared by instances: held only for one comparison

    # Bullhorn limits concurrent API sessions (25 or 50 by edition: kb.bullhorn.com,
    # "Understanding API Usage Limits"), not concurrent requests in one session (we keep one
    # session per connection): no request limit to follow, the base default.
    default_max_concurrency = MAX_CONCURRENCY_CAP

    def search(self, query: str) -> SearchPage:
        records: list[dict[str, Any]] = []
        for entity in ENTITIES:
            records.extend(self._search_entity(entity, lucene_query(query, entity)))
        return SearchPage(records, self._state)

    def searches(self, planned: list[str]) -> list[Search]:
        """One search per entity ORing every planned term (3 requests whatever the formats),
        sent concurrently by ``find``; each hit's matched value ranks it in the spec's order."""
        if not planned:
            return []
        return [
            Search(None, partial(self._entity_page, entity, tuple(planned))) for entity in ENTITIES
        ]

    def request_count(self, planned: list[str]) -> int:
        return len(ENTITIES) if planned else 0

    def _entity_page(self, entity: str, terms: tuple[str, ...]) -> SearchPage:
        lucene = lucene_query(terms, entity)
        found = self._search_entity(entity, lucene, max_pages=MAX_PAGES * len(terms))
        return SearchPage(found, self._state)

    def retry_after(self, resp: requests.Response) -> float | None:
        wait = retry_after_seconds(resp.headers.get("Retry-After"))
        if wait is None:
            state = self.rate_limit_state(resp)
            if state is not None and state.reset is not None:
                wait = max(0.0, state.reset - time.time())
        return RATE_LIMIT_WAIT_S if wait is None else wait

    # ``ratelimit-limit`` / ``-remaining`` / ``-reset``: the names are confirmed by
    # RingCentral's App Connect Bullhorn connector, which reads exactly these from Bullhorn's
    # search and entity responses (ringcentral/rc-unified-crm-extension
    # ``src/connectors/bullhorn/index.ts`` @fa94f96). Bullhorn's own reference documents no
    # rate-limit header (bullhorn/rest-api-docs ``_errors.md``: "429 Rate Limited -- Wait 1
    # second then retry request"), so the reset's unit is UNCONFIRMED: read as seconds left,
    # as the IETF RateLimit header fields draft these names come from defines it.
    rate_limit_headers = ("ratelimit-limit", "ratelimit-remaining", "ratelimit-reset")
    rate_limit_reset_is_delta = True

    def additional_info(self, name: str, match: Mapping[str, Any]) -> list[dict[str, Any]]:
        """The match's job orders or placements, each ``{"const": str(id), "title", "id"}``,
        from one ``search/{JobOrder|Placement}`` of up to ``LINKED_MAX`` records (Lucene
        search supports both entities: bullhorn/rest-api-docs ``_search.md``), charged to the
        budget and traced like every request. Leads own neither: none is asked for.

        ``job_orders``: a ClientContact's, ``clientContact.id:ID AND isOpen:true`` (JobOrder
        entity: ``clientContact`` to-one, ``isOpen``).

        ``placements``: a Candidate's (``candidate.id:ID``) or a ClientContact's through its
        job orders (``jobOrder.clientContact.id:ID``): the Placement entity "corresponds to a
        single JobOrder and a single Candidate" and has no contact of its own
        (bullhorn/rest-api-docs ``entityref/_placement.md``). Placements whose ``status``
        is one of the two that reference names as ended (``Completed``, ``Terminated``) are
        left out. The title is the job order's title, with the placed candidate's name for
        a ClientContact's.
        """
        if name not in LINKED:
            return super().additional_info(name, match)
        entity = {v[1]: k for k, v in ENTITIES.items()}.get(str(match.get("type")), "")
        target, fields, by_entity = LINKED[name]
        link = by_entity.get(entity)
        if link is None or not str(match.get("id")).isdigit():
            return []
        query = link.format(id=match["id"])
        body = self._call(
            "POST",
            f"search/{target}",
            json={"query": query},
            params={"fields": fields, "start": 0, "count": LINKED_MAX},
        )
        data = body.get("data") if isinstance(body, Mapping) else None
        if not isinstance(data, list):
            raise CRMUnavailable(f"Bullhorn answered a {target} search without its data list.")
        items = [i for i in data if isinstance(i, Mapping) and i.get("id") is not None]
        return [
            {"const": str(i["id"]), "title": linked_title(name, entity, i), "id": i["id"]}
            for i in items
        ]

    # ----- search ----------------------------------------------------------------------------
    def _search_entity(
        self, entity: str, lucene: str, max_pages: int = MAX_PAGES
    ) -> list[dict[str, Any]]:
        size = self.int_option("page_size", DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE)
        found: list[dict[str, Any]] = []
        start = 0
        for _ in range(max_pages):
            body = self._call(
                "POST",
                f"search/{entity}",
                json={"query": lucene},
                params={"fields": ENTITIES[entity][0], "start": start, "count": size},
            )
            data = body.get("data") if isinstance(body, Mapping) else None
            if not isinstance(data, list):
                raise CRMUnavailable("Bullhorn answered a search without its data list.")
            found.extend(to_contact(entity, item) for item in data)
            start += len(data)
            total = body.get("total")
            if (
                not data
                or (total is None and len(data) < size)
                or (isinstance(total, int) and start >= total)
            ):
                break
        else:
            self.complete = False  # more pages than MAX_PAGES: not an answer to cache
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
        # Responses of a lookup's concurrent searches arrive in any order: keep the newest.
        with self._state_lock:
            self._state = newest_state(self._state, self.rate_limit_state(resp))
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
