"""``crm = "pipedrive"``: Pipedrive API v2 person search, a contains-match on phone.

Config: ``base_url`` (``https://COMPANY.pipedrive.com``) and ``token_env`` naming the API
token or OAuth access token, sent as ``x-api-token`` (never in the URL, where proxies and
logs keep it). Optional ``exact_match = true`` makes every search exact.

One query is ``GET /api/v2/persons/search?term=N&fields=phone``, pages followed through
``additional_data.next_cursor`` up to ``max_pages``. The search item carries no creation
time, so each matched person is also read once with ``GET /api/v2/persons/{id}``: see
``PipedriveConnector.person_dates``. Rate limit: ``x-ratelimit-*`` headers, whose reset is
seconds left in the window (normalised here to epoch seconds), and 429 with ``Retry-After``.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping, MutableMapping
from concurrent.futures import Future
from typing import Any

import phonenumbers
import requests

from contact_lookup.connectors.base import Option, SearchPage
from contact_lookup.connectors.http import HttpConnector, header_int
from contact_lookup.model.config import MAX_CONCURRENCY_CAP
from contact_lookup.model.errors import BadQuery, CRMUnavailable, RateLimitState
from contact_lookup.model.phone import national_digits


class PipedriveConnector(HttpConnector):
    crm = "pipedrive"
    default_rate_limit = (10, 2.0)  # search: about 10 per 2 s window
    # Pipedrive documents token-based rate limits per 2-second window and a daily budget
    # (pipedrive.readme.io "Rate limiting"), no concurrency limit: the base default.
    default_max_concurrency = MAX_CONCURRENCY_CAP
    options = {
        "exact_match": Option(
            bool, "send exact_match=true (the term must equal the stored value)", False
        ),
    }
    page_limit = 100
    # Search is limited harder than the rest of the API (about 10 per 2 s): 5 pages of 100
    # per number is already far past a useful call pop.
    max_pages = 5
    # Person reads per lookup: a number shared by more people than this is a switchboard;
    # the rest come back without createdDate rather than spend the rate limit.
    person_fetch_cap = 10
    person_ttl_s = 600.0  # add_time never changes; update_time may lag by this much
    person_cache_size = 5000  # per connection, so memory stays bounded

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.exact = self.connection.options.get("exact_match") is True
        self._contains: set[str] = set()  # planned terms searched as "contains"
        # Ids read in this lookup (per-lookup instance), each with its answer: the lookup's
        # searches run concurrently, and a person found by two of them is read once.
        self._person_reads: dict[int, Future[Mapping[str, Any]]] = {}
        self._reads_lock = threading.Lock()

    # ----- which queries -------------------------------------------------------------------
    def plan(self, queries: list[str]) -> list[str]:
        """Fewer, wider searches where ``contains`` makes some queries redundant.

        Pipedrive documents the default search as "term can be present anywhere in the field
        value", with no phone normalisation. So:

        - the E.164 number is replaced by its national digits (``+14155550100`` ->
          ``4155550100``): every stored string containing the E.164 form contains these
          digits too, and so do ``14155550100`` and ``4155550100``, which E.164 misses.
          RingCentral's own Pipedrive connector searches the same way.
        - a formatted variant is dropped when another planned term is a substring of it
          (``+1 415-555-0100`` contains ``415-555-0100``): it can only find a subset.
        - the remaining variants stay: ``(415) 555-0100`` contains no other term, and the
          national digits do not match it.

        An extension lookup (no E.164 first) and ``exact_match = true`` keep every query and
        search exactly: a contains-search for ``102`` would match every number with 102 in it.
        """
        if self.exact or not queries or not queries[0].startswith("+"):
            self._contains = set()
            return list(queries)
        try:
            first = national_digits(queries[0])
        except phonenumbers.NumberParseException:
            first = queries[0]
        terms = list(dict.fromkeys([first, *queries[1:]]))
        kept = [t for t in terms if not any(o != t and o.lower() in t.lower() for o in terms)]
        self._contains = set(kept)
        return kept

    # ----- one query -----------------------------------------------------------------------
    def search(self, query: str) -> SearchPage:
        exact = query not in self._contains
        params: dict[str, Any] = {"term": query, "fields": "phone", "limit": self.page_limit}
        if exact:
            params["exact_match"] = "true"
        items: list[Mapping[str, Any]] = []
        state: RateLimitState | None = None
        for _ in range(self.max_pages):
            body, resp = self.request_json(
                "api/v2/persons/search", params=params, headers=self._headers()
            )
            state = self.rate_limit_state(resp) or state
            data = body.get("data") if isinstance(body, Mapping) else None
            page = data.get("items") if isinstance(data, Mapping) else None
            if not isinstance(page, list):
                raise CRMUnavailable(
                    "Pipedrive answered without search items.", status_code=resp.status_code
                )
            items.extend(_item(entry) for entry in page)
            cursor = _next_cursor(body)
            if not cursor:
                break
            params = {**params, "cursor": cursor}
        records = []
        for item in items:
            dates, fetched_state = self.person_dates(item.get("id"))
            state = fetched_state or state
            records.append(_record(item, query, exact, dates))
        return SearchPage(records, state)

    def person_dates(self, person_id: Any) -> tuple[Mapping[str, Any], RateLimitState | None]:
        """``add_time`` / ``update_time`` of one person, from the cache or one request.

        Bounded so a lookup cannot blow the rate limit: at most one request per distinct
        person id per lookup (a person found by two queries is read once), at most
        ``person_fetch_cap`` reads per lookup, and answers cached in ``self.shared`` (per
        connection, across lookups and threads) for ``person_ttl_s``. Past the cap a person
        comes back without dates. A person deleted since the search (404) has none either;
        any other error fails the lookup like any other request, so a rate limit is retried
        later instead of caching contacts without createdDate.
        """
        if not isinstance(person_id, int):
            return {}, None
        cache, lock = self._person_cache()
        now = time.monotonic()
        with lock:
            hit = cache.get(person_id)
        if hit is not None and hit[0] > now:
            return hit[1], None
        with self._reads_lock:
            pending = self._person_reads.get(person_id)
            if pending is None:
                if len(self._person_reads) >= self.person_fetch_cap:
                    return {}, None
                mine: Future[Mapping[str, Any]] = Future()
                self._person_reads[person_id] = mine
        if pending is not None:
            return pending.result(), None  # another search of this lookup is reading it
        try:
            dates, state = self._read_person(person_id, cache, lock, now)
        except BaseException as exc:
            mine.set_exception(exc)
            raise
        mine.set_result(dates)
        return dates, state

    def _read_person(
        self, person_id: int, cache: MutableMapping[int, Any], lock: threading.Lock, now: float
    ) -> tuple[Mapping[str, Any], RateLimitState | None]:
        try:
            body, resp = self.request_json(f"api/v2/persons/{person_id}", headers=self._headers())
        except BadQuery as exc:
            if exc.status_code == 404:
                return {}, None
            raise
        data = body.get("data") if isinstance(body, Mapping) else None
        if not isinstance(data, Mapping):
            raise CRMUnavailable(
                "Pipedrive answered without the person.", status_code=resp.status_code
            )
        dates = {"add_time": data.get("add_time"), "update_time": data.get("update_time")}
        with lock:
            if len(cache) >= self.person_cache_size:
                _evict(cache, now)
            cache[person_id] = (now + self.person_ttl_s, dates)
        return dates, self.rate_limit_state(resp)

    # ----- vendor signals ------------------------------------------------------------------
    def rate_limit_state(self, resp: requests.Response) -> RateLimitState | None:
        """``x-ratelimit-reset`` is seconds left in the window: made epoch seconds here."""
        h = resp.headers
        reset_in = header_int(h, "x-ratelimit-reset")
        state = RateLimitState(
            remaining=header_int(h, "x-ratelimit-remaining"),
            amount=header_int(h, "x-ratelimit-limit"),
            reset=None if reset_in is None else time.time() + reset_in,
        )
        return state if state != RateLimitState() else None

    def _headers(self) -> dict[str, str]:
        return {"x-api-token": self.secret or "", "Accept": "application/json"}

    def _person_cache(self) -> tuple[MutableMapping[int, Any], threading.Lock]:
        # setdefault is atomic on a dict, so two threads agree on one cache and one lock.
        lock = self.shared.setdefault("person_lock", threading.Lock())
        cache = self.shared.setdefault("persons", {})
        return cache, lock


def _evict(cache: MutableMapping[int, Any], now: float) -> None:
    """Drop expired entries, then the oldest half if that was not enough."""
    for key in [k for k, (expires, _) in cache.items() if expires <= now]:
        del cache[key]
    if cache:
        by_expiry = sorted(cache, key=lambda k: cache[k][0])
        for key in by_expiry[: len(cache) // 2 or 1]:
            del cache[key]


def _next_cursor(body: Mapping[str, Any]) -> str | None:
    extra = body.get("additional_data")
    cursor = extra.get("next_cursor") if isinstance(extra, Mapping) else None
    return cursor if isinstance(cursor, str) and cursor else None


def _item(entry: Any) -> Mapping[str, Any]:
    item = entry.get("item") if isinstance(entry, Mapping) else None
    if not isinstance(item, Mapping):
        raise CRMUnavailable("Pipedrive returned a search item that is not an object.")
    return item


def _record(
    item: Mapping[str, Any], query: str, exact: bool, dates: Mapping[str, Any]
) -> Mapping[str, Any]:
    """A person in spec field names; ``phone`` is the stored number the term matched."""
    needle = query.lower()
    phones = [p for p in item.get("phones") or [] if isinstance(p, str)]
    matched = next(
        (p for p in phones if (p.lower() == needle if exact else needle in p.lower())), None
    )
    org = item.get("organization")
    emails = [e for e in item.get("emails") or [] if isinstance(e, str)]
    return {
        "id": item.get("id"),
        "name": item.get("name"),
        "phone": matched or query,
        "type": "Person",
        "company": org.get("name") if isinstance(org, Mapping) else None,
        "email": item.get("primary_email") or (emails[0] if emails else None),
        "createdDate": dates.get("add_time"),
        "mostRecentActivityDate": dates.get("update_time"),
        "additionalInfo": None,
    }
