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

Matching: Lucene term match on the stored string, so every formatted variant is a different
term and ``plan`` keeps them all (the base behaviour).

Errors: 429 -> ``RateLimited``: the wait from ``Retry-After`` or the ``ratelimit-reset``
header where sent, else 1 s (Bullhorn's message and its SDK say wait one second and retry:
supportforums.bullhorn.com viewtopic t=34864); login
refused -> ``AuthRejected``; the rest as ``HttpConnector.check``.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import requests

from contact_lookup.connectors.base import PHONES, Option, SearchPage
from contact_lookup.connectors.http import HttpConnector, header_int, retry_after_seconds
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
_SESSION, _LOCK = "bullhorn.session", "bullhorn.lock"


@dataclass(frozen=True)
class BhSession:
    token: str
    rest_url: str  # ends with "/"


def lucene_query(number: str, entity: str = "ClientContact") -> str:
    """The search for one phone string on ``entity``: quoted, so ``+ ( ) -`` are not Lucene
    syntax; deleted records and the entity's excluded status left out."""
    value = '"' + number.replace("\\", "\\\\").replace('"', '\\"') + '"'
    either = " OR ".join(f"{field}:{value}" for field in ENTITY_PHONES[entity])
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


class BullhornConnector(HttpConnector):
    crm = "bullhorn"
    default_rate_limit = (10, 1.0)  # none documented: a conservative guess
    options = {
        "page_size": Option(int, "records per search page", DEFAULT_PAGE_SIZE, 1, MAX_PAGE_SIZE),
        "additional_fields": Option(
            list, "additionalInfo to fetch for each match: job_orders", [], choices=("job_orders",)
        ),
    }
    requests_per_query = 3  # one search per entity: ClientContact, Candidate, Lead
    additional_fields = {"job_orders": "a ClientContact's open job orders"}
    _state: RateLimitState | None = None  # the newest ratelimit-* headers seen

    def search(self, query: str) -> SearchPage:
        records: list[dict[str, Any]] = []
        for entity in ENTITIES:
            records.extend(self._search_entity(entity, lucene_query(query, entity)))
        return SearchPage(records, self._state)

    def retry_after(self, resp: requests.Response) -> float | None:
        wait = retry_after_seconds(resp.headers.get("Retry-After"))
        if wait is None:
            state = self.rate_limit_state(resp)
            if state is not None and state.reset is not None:
                wait = max(0.0, state.reset - time.time())
        return RATE_LIMIT_WAIT_S if wait is None else wait

    def rate_limit_state(self, resp: requests.Response) -> RateLimitState | None:
        """Bullhorn's ``ratelimit-limit`` / ``-remaining`` / ``-reset`` headers (the IETF
        RateLimit header fields draft, whose reset is seconds left: made epoch seconds here),
        which RingCentral's App Connect Bullhorn connector reads; absent on older pods."""
        h = resp.headers
        reset_in = header_int(h, "ratelimit-reset")
        state = RateLimitState(
            remaining=header_int(h, "ratelimit-remaining"),
            amount=header_int(h, "ratelimit-limit"),
            reset=None if reset_in is None else time.time() + reset_in,
        )
        return state if state != RateLimitState() else None

    def additional_info(self, name: str, match: Mapping[str, Any]) -> list[dict[str, Any]]:
        """``job_orders``: one ``search/JobOrder`` with ``clientContact.id:ID AND
        isOpen:true`` (Bullhorn REST reference, JobOrder entity; Lucene search), up to 100, for
        a ClientContact; Candidates and Leads own no job orders (none is asked for). Each
        ``{"const": str(id), "title": title, "id": id}``."""
        if name != "job_orders":
            return super().additional_info(name, match)
        if match.get("type") != ENTITIES["ClientContact"][1] or not str(match["id"]).isdigit():
            return []
        body = self._call(
            "POST",
            "search/JobOrder",
            json={"query": f"clientContact.id:{match['id']} AND isOpen:true"},
            params={"fields": "id,title", "start": 0, "count": 100},
        )
        data = body.get("data") if isinstance(body, Mapping) else None
        if not isinstance(data, list):
            raise CRMUnavailable("Bullhorn answered a job order search without its data list.")
        return [
            {"const": str(j["id"]), "title": j.get("title"), "id": j["id"]}
            for j in data
            if isinstance(j, Mapping) and j.get("id") is not None
        ]

    # ----- search ----------------------------------------------------------------------------
    def _search_entity(self, entity: str, lucene: str) -> list[dict[str, Any]]:
        size = self.int_option("page_size", DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE)
        found: list[dict[str, Any]] = []
        start = 0
        for _ in range(MAX_PAGES):
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
        self._state = self.rate_limit_state(resp) or self._state
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
