"""``crm = "pipedrive"``: Pipedrive API v2 person search, a contains-match on phone.

Config: ``base_url`` (``https://COMPANY.pipedrive.com``) and ``token_env`` naming the API
token, sent as ``x-api-token``, or with ``auth = "oauth2"`` an OAuth access token, sent as
``Authorization: Bearer`` (never in the URL, where proxies and logs keep it). Optional
``exact_match = true`` makes every search exact.

One query is ``GET /api/v2/persons/search?term=N&fields=phone``, pages followed through
``additional_data.next_cursor`` up to ``max_pages``. The search item carries no creation
time, so the matched persons are read in batches of 100 with ``GET /api/v2/persons?ids=``:
see ``PipedriveConnector.person_dates``. Every request is paid through the shared budget
as it is sent (``Connector.budget``). Rate limit: ``x-ratelimit-*`` headers, whose reset is
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

from contact_lookup.connectors.base import PHONES, Option, SearchPage
from contact_lookup.connectors.http import HttpConnector, header_int
from contact_lookup.model.config import MAX_CONCURRENCY_CAP
from contact_lookup.model.errors import CRMUnavailable, RateLimited, RateLimitState
from contact_lookup.model.phone import national_digits

# The daily token budget's header, and the hold when it is spent. UNCONFIRMED by Pipedrive's
# own pages: pipedrive.readme.io "Rate limiting" (token-based budget, "resets at the start of
# the next day") names no header for it; ``x-daily-ratelimit-token-remaining`` is what a
# third-party client reports the live API sending. NOT ``x-daily-requests-left``: the same
# page documents that one as the POST/PUT fair-usage count ("how many requests you can still
# make to POST/PUT endpoints during the ongoing day (calculated in UTC). Applicable only to
# api_token requests"; its example notes it "only appears in responses for POST and PUT
# endpoints"). A lookup only GETs, so it neither spends nor is held by that count.
DAILY_HEADERS = ("x-daily-ratelimit-token-remaining",)
DAILY_WAIT_S = 3600.0


class PipedriveConnector(HttpConnector):
    crm = "pipedrive"
    default_rate_limit = (10, 2.0)  # search: about 10 per 2 s window
    # Pipedrive documents token-based rate limits per 2-second window and a daily budget
    # (pipedrive.readme.io "Rate limiting"), no concurrency limit: the base default.
    default_max_concurrency = MAX_CONCURRENCY_CAP
    additional_fields = {
        "deals": "the person's open deals",
        "leads": "the person's leads that are not archived",
    }
    options = {
        "additional_fields": Option(
            list,
            "additionalInfo to fetch for each match: deals, leads",
            [],
            choices=("deals", "leads"),
        ),
        "exact_match": Option(
            bool, "send exact_match=true (the term must equal the stored value)", False
        ),
    }
    page_limit = 100
    # Search is limited harder than the rest of the API (about 10 per 2 s): 5 pages of 100
    # per number is already far past a useful call pop.
    max_pages = 5
    # Persons per batched read (Pipedrive v2 "Get all persons": ids takes up to 100).
    batch_size = 100
    person_ttl_s = 600.0  # add_time never changes; update_time may lag by this much
    person_cache_size = 5000  # per connection, so memory stays bounded

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.exact = self.connection.options.get("exact_match") is True
        self._contains: set[str] = set()  # planned terms searched as "contains"
        # Person reads of this lookup (a per-lookup instance), by id (see person_dates).
        self._reads: dict[int, Future[Mapping[str, Any]]] = {}
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
        else:
            self.complete = False  # more pages than max_pages: not an answer to cache
        # Only persons that hold the number are read: the rest will be dropped by find().
        wanted = [item.get("id") for item in items if self.holds_number(_phones(item))]
        dates, read_state = self.person_dates(wanted)
        state = read_state or state
        records = [_record(item, query, exact, dates.get(_id(item), {})) for item in items]
        return SearchPage(records, state)

    def person_dates(
        self, person_ids: list[Any]
    ) -> tuple[dict[int, Mapping[str, Any]], RateLimitState | None]:
        """``add_time`` / ``update_time`` of every person, from the cache or batched reads.

        The search item carries no creation time, so persons not cached are read with
        ``GET /api/v2/persons?ids=1,2,...`` (Pipedrive API v2 "Get all persons": ``ids`` is an
        "Optional comma separated string array of up to 100 entity ids to fetch ... If any of
        the requested entities do not exist or are not visible, they are not included in the
        response": pipedrive/client-nodejs ``src/versions/v2/api/persons-api.ts`` @97e5382):
        one request per 100 persons, however many match, each paid for
        through the budget like any request. Answers are cached in ``self.shared`` (per
        connection, across lookups and threads) for ``person_ttl_s``. A person deleted since
        the search is absent from the answer and has no dates (the CRM holds none); any error
        fails the lookup, so a rate limit is retried later instead of caching contacts
        without createdDate.
        """
        cache, lock = self._person_cache()
        now = time.monotonic()
        out: dict[int, Mapping[str, Any]] = {}
        wanted: list[int] = []
        with lock:
            for pid in dict.fromkeys(p for p in person_ids if isinstance(p, int)):
                hit = cache.get(pid)
                if hit is not None and hit[0] > now:
                    out[pid] = hit[1]
                else:
                    wanted.append(pid)
        # The lookup's searches run concurrently (fan-out): a person another search of this
        # lookup is already reading is waited for, not read twice.
        mine: dict[int, Future[Mapping[str, Any]]] = {}
        theirs: dict[int, Future[Mapping[str, Any]]] = {}
        with self._reads_lock:
            for pid in wanted:
                pending = self._reads.get(pid)
                if pending is None:
                    mine[pid] = self._reads[pid] = Future()
                else:
                    theirs[pid] = pending
        try:
            state = self._read_persons(list(mine), out, cache, lock, now)
        except BaseException as exc:
            for future in mine.values():
                if not future.done():
                    future.set_exception(exc)
            raise
        for pid, future in mine.items():
            if not future.done():
                future.set_result(out.get(pid, {}))
        for pid, future in theirs.items():
            if dates := future.result():
                out[pid] = dates
        return out, state

    def _read_persons(
        self,
        wanted: list[int],
        out: dict[int, Mapping[str, Any]],
        cache: MutableMapping[int, Any],
        lock: threading.Lock,
        now: float,
    ) -> RateLimitState | None:
        """Batched reads of ``wanted`` into ``out`` and the cache; the newest rate-limit state."""
        state: RateLimitState | None = None
        for start in range(0, len(wanted), self.batch_size):
            batch = wanted[start : start + self.batch_size]
            body, resp = self.request_json(
                "api/v2/persons",
                params={"ids": ",".join(map(str, batch)), "limit": self.batch_size},
                headers=self._headers(),
            )
            state = self.rate_limit_state(resp) or state
            data = body.get("data") if isinstance(body, Mapping) else None
            if not isinstance(data, list):
                raise CRMUnavailable(
                    "Pipedrive answered without the persons.", status_code=resp.status_code
                )
            with lock:
                for person in data:
                    if not isinstance(person, Mapping) or person.get("id") not in batch:
                        continue
                    dates = {
                        "add_time": person.get("add_time"),
                        "update_time": person.get("update_time"),
                    }
                    if len(cache) >= self.person_cache_size:
                        _evict(cache, now)
                    cache[person["id"]] = (now + self.person_ttl_s, dates)
                    out[person["id"]] = dates
        return state

    def additional_info(self, name: str, match: Mapping[str, Any]) -> list[dict[str, Any]]:
        """``deals``: ``GET /api/v2/deals?person_id=ID&status=open`` (API v2 "Get all deals":
        ``person_id``, ``status`` open|won|lost|deleted; pipedrive/client-nodejs
        ``src/versions/v2/api/deals-api.ts``); ``leads``: ``GET /api/v1/leads?person_id=ID``,
        which answers only leads that are not archived (v1 "Get all leads"; its
        ``archived_status`` parameter was removed: client-nodejs CHANGELOG, and v2 has no
        lead list, only search). Each ``{"const": str(id), "title": title, "id": id}``, one
        page."""
        if name == "deals":
            path, params = "api/v2/deals", {"person_id": match["id"], "status": "open"}
        elif name == "leads":
            path, params = "api/v1/leads", {"person_id": match["id"]}
        else:
            return super().additional_info(name, match)
        body, resp = self.request_json(
            path, params={**params, "limit": self.page_limit}, headers=self._headers()
        )
        data = body.get("data") if isinstance(body, Mapping) else None
        if not isinstance(data, list):
            raise CRMUnavailable(
                f"Pipedrive answered without {name}.", status_code=resp.status_code
            )
        return [
            {"const": str(d.get("id")), "title": d.get("title"), "id": d.get("id")}
            for d in data
            if isinstance(d, Mapping) and d.get("id") is not None
        ]

    # ----- vendor signals ------------------------------------------------------------------
    # ``x-ratelimit-reset`` is seconds left in the window (pipedrive.readme.io, rate limiting).
    rate_limit_headers = ("x-ratelimit-limit", "x-ratelimit-remaining", "x-ratelimit-reset")
    rate_limit_reset_is_delta = True

    def retry_after(self, resp: requests.Response) -> float | None:
        """The 2-second burst window's wait, or an hourly probe when the daily token budget
        is spent (pipedrive.readme.io "Rate limiting": the budget "resets at the start of
        the next day", whose time zone is not given; ``x-daily-ratelimit-token-remaining``
        says 0: see ``DAILY_HEADERS``)."""
        if self.daily_budget_spent(resp):
            return DAILY_WAIT_S
        return super().retry_after(resp)

    @staticmethod
    def daily_budget_spent(resp: requests.Response) -> bool:
        return any(header_int(resp.headers, h) == 0 for h in DAILY_HEADERS)

    def check(self, resp: requests.Response) -> None:
        if resp.status_code == 429 and self.daily_budget_spent(resp):
            raise RateLimited(
                "Pipedrive's daily API token budget is spent.",
                retry_after_s=DAILY_WAIT_S,
                status_code=429,
                rate_limit=self.rate_limit_state(resp),
            )
        super().check(resp)

    def _headers(self) -> dict[str, str]:
        """The auth header: Pipedrive documents ``x-api-token`` for API tokens and
        ``Authorization: Bearer`` for OAuth access tokens (pipedrive.readme.io,
        "Authentication"); an OAuth token sent as ``x-api-token`` is refused."""
        if self.connection.auth != "token":  # an OAuth access token (auth = "oauth2")
            return {"Authorization": f"Bearer {self.secret or ''}", "Accept": "application/json"}
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


def _id(item: Mapping[str, Any]) -> int:
    """The person id, or -1 (no person has it) when the item has none."""
    pid = item.get("id")
    return pid if isinstance(pid, int) else -1


def _phones(item: Mapping[str, Any]) -> list[str]:
    return [p for p in item.get("phones") or [] if isinstance(p, str)]


def _record(
    item: Mapping[str, Any], query: str, exact: bool, dates: Mapping[str, Any]
) -> Mapping[str, Any]:
    """A person in spec field names; ``phone`` is the stored number the term matched."""
    needle = query.lower()
    phones = _phones(item)
    matched = next(
        (p for p in phones if (p.lower() == needle if exact else needle in p.lower())), None
    )
    org = item.get("organization")
    emails = [e for e in item.get("emails") or [] if isinstance(e, str)]
    return {
        "id": item.get("id"),
        "name": item.get("name"),
        "phone": matched or query,
        PHONES: phones,
        "type": "Person",
        "company": org.get("name") if isinstance(org, Mapping) else None,
        "email": item.get("primary_email") or (emails[0] if emails else None),
        "createdDate": dates.get("add_time"),
        "mostRecentActivityDate": dates.get("update_time"),
        "additionalInfo": None,
    }
