"""``crm = "hubspot"``: HubSpot CRM v3 contact search with a Bearer token.

Connection: ``base_url`` (``https://api.hubapi.com``); ``token_env`` names the variable holding
a private-app or OAuth access token. Option ``page_size`` (1-200, default 100) is the search
``limit``.

Search: one ``POST /crm/v3/objects/contacts/search`` per lookup. Filter groups are ORed
(at most 5 groups, 10 filters in a group, 25 in all: developers.hubspot.com changelog
"Expanded filtering capabilities", 2024-08-26), so one query is two groups, ``phone EQ N``
and ``mobilephone EQ N``, and several queries are two groups with the ``IN`` operator,
``phone IN [N, F1, F2]`` and ``mobilephone IN [...]`` (CRM search guide, "Filter search
results": ``IN`` matches any value of a ``values`` list exactly; string values lowercase,
which phone strings already are): the records the separate searches would find, in one
request. ``paging.next.after`` is followed for at most ``MAX_PAGES`` pages per query (a
number shared by more contacts than that is not a person to pop).

Matching: ``EQ`` compares the stored string (case-insensitively) and HubSpot stores a phone
number as it was typed, so ``+14155550100`` and ``(415) 555-0100`` find different contacts:
no formatted variant is redundant, and ``plan`` keeps them all (the base behaviour).

Rate limits: the search API allows about 5 requests/s per token. A 429 body is
``{status: "error", errorType: "RATE_LIMIT", policyName}`` and the wait comes from
``Retry-After`` if sent, else ``X-HubSpot-RateLimit-Interval-Milliseconds`` (one whole window,
an upper bound), else the policy's own window (``POLICY_WAIT_S``: ``SECONDLY`` 1 s,
``TEN_SECONDLY_ROLLING`` 10 s); a ``DAILY`` limit resets at midnight in the portal's time
zone, which we cannot know, so every worker holds off an hour and probes again.
``X-HubSpot-RateLimit-Max``/``-Remaining`` give the state; HubSpot sends no reset time.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from functools import partial
from typing import Any

import requests

from contact_lookup.connectors.base import PHONES, Option, Search, SearchPage
from contact_lookup.connectors.http import HttpConnector, header_int, retry_after_seconds
from contact_lookup.model.errors import CRMUnavailable, RateLimited, RateLimitState

SEARCH_PATH = "/crm/v3/objects/contacts/search"
DEALS_SEARCH_PATH = "/crm/v3/objects/deals/search"
PHONE_PROPERTIES = ("phone", "mobilephone")
PROPERTIES = [
    "firstname",
    "lastname",
    "email",
    "phone",
    "mobilephone",
    "jobtitle",
    "company",
    "createdate",
    "lastmodifieddate",
]
DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE = 100, 200
MAX_PAGES = 5
# The wait each 429 policy implies when HubSpot sends no Retry-After or interval header
# (developers.hubspot.com "API usage guidelines and limits": the search API's per-second
# limit, the ten-second rolling burst limit, and the daily limit that resets at midnight in
# the portal's time zone, which we cannot know: an hourly probe, the limiter's longest hold).
POLICY_WAIT_S = {"SECONDLY": 1.0, "TEN_SECONDLY_ROLLING": 10.0, "DAILY": 3600.0}


def search_body(numbers: str | Sequence[str], limit: int, after: str | None) -> dict[str, Any]:
    """The search for one number (``EQ``) or any of several (``IN``), in either phone property."""
    terms = [numbers] if isinstance(numbers, str) else list(numbers)
    filters: list[dict[str, Any]] = [
        {"propertyName": p, "operator": "EQ", "value": terms[0]}
        if len(terms) == 1
        else {"propertyName": p, "operator": "IN", "values": terms}
        for p in PHONE_PROPERTIES
    ]
    body: dict[str, Any] = {
        "filterGroups": [{"filters": [f]} for f in filters],
        "properties": PROPERTIES,
        "limit": limit,
    }
    if after is not None:
        body["after"] = after
    return body


def to_contact(item: Any) -> dict[str, Any]:
    """One result in the spec's field names; dates stay ISO strings as HubSpot sent them."""
    if not isinstance(item, Mapping):
        raise CRMUnavailable("HubSpot returned a search result that is not an object.")
    props = item.get("properties")
    props = props if isinstance(props, Mapping) else {}
    name = " ".join(str(p) for p in (props.get("firstname"), props.get("lastname")) if p)
    return {
        "id": item.get("id"),
        "name": name or props.get("email") or None,
        "type": "Contact",
        "title": props.get("jobtitle"),
        "company": props.get("company"),
        "email": props.get("email"),
        PHONES: [props.get(p) for p in PHONE_PROPERTIES],
        "createdDate": props.get("createdate") or item.get("createdAt"),
        "mostRecentActivityDate": props.get("lastmodifieddate") or item.get("updatedAt"),
    }


class HubSpotConnector(HttpConnector):
    crm = "hubspot"
    default_rate_limit = (4, 1.0)  # search: about 4-5 requests/s per token
    additional_fields = {"deals": "the contact's open deals"}
    options = {
        "page_size": Option(int, "records per search page", DEFAULT_PAGE_SIZE, 1, MAX_PAGE_SIZE),
        "additional_fields": Option(
            list, "additionalInfo to fetch for each match: deals", [], choices=("deals",)
        ),
    }

    def additional_info(self, name: str, match: Mapping[str, Any]) -> list[dict[str, Any]]:
        """``deals``: one ``POST /crm/v3/objects/deals/search`` filtered on
        ``associations.contact EQ id`` and ``hs_is_closed EQ false``, up to 100; each
        ``{"const": id, "title": dealname, "id": id}``. The pseudo-property
        ``associations.{objectType}`` is HubSpot's documented way to search through
        associations (developers.hubspot.com "Search the CRM", whose example filters
        tickets on ``"propertyName": "associations.contact", "operator": "EQ"``);
        ``hs_is_closed`` is HubSpot's default deal property "Is Deal Closed?" (its
        use as a search filter is not shown in a vendor example we found)."""
        if name != "deals":
            return super().additional_info(name, match)
        filters = [
            {"propertyName": "associations.contact", "operator": "EQ", "value": match["id"]},
            {"propertyName": "hs_is_closed", "operator": "EQ", "value": "false"},
        ]
        body, resp = self.request_json(
            DEALS_SEARCH_PATH,
            method="POST",
            json={"filterGroups": [{"filters": filters}], "properties": ["dealname"], "limit": 100},
            headers={"Authorization": f"Bearer {self.secret}"},
        )
        results = body.get("results") if isinstance(body, Mapping) else None
        if not isinstance(results, list):
            raise CRMUnavailable("HubSpot answered without deals.", status_code=resp.status_code)
        out = []
        for deal in results:
            if isinstance(deal, Mapping) and deal.get("id") is not None:
                props = deal.get("properties")
                title = props.get("dealname") if isinstance(props, Mapping) else None
                out.append({"const": str(deal["id"]), "title": title, "id": deal["id"]})
        return out

    # HubSpot documents per-second and daily limits, not a concurrency limit: no more in
    # flight than one second of the search budget (developers.hubspot.com "API usage
    # guidelines": search endpoints are limited to about 5 requests per second per token).
    default_max_concurrency = 4

    def search(self, query: str) -> SearchPage:
        return self._search_terms((query,))

    def searches(self, planned: list[str]) -> list[Search]:
        """One search for every planned query (``IN``), or the base's one per query."""
        if len(planned) <= 1:
            return super().searches(planned)
        return [Search(None, partial(self._search_terms, tuple(planned)))]

    def request_count(self, planned: list[str]) -> int:
        return 1 if planned else 0

    def _search_terms(self, terms: tuple[str, ...]) -> SearchPage:
        size = self.int_option("page_size", DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE)
        records: list[dict[str, Any]] = []
        after: str | None = None
        state: RateLimitState | None = None
        for _ in range(MAX_PAGES * len(terms)):
            body, resp = self.request_json(
                SEARCH_PATH,
                method="POST",
                json=search_body(terms, size, after),
                headers={"Authorization": f"Bearer {self.secret}"},
            )
            state = self.rate_limit_state(resp) or state
            results = body.get("results") if isinstance(body, Mapping) else None
            if not isinstance(results, list):
                raise CRMUnavailable(
                    "HubSpot answered a search without its results list.",
                    status_code=resp.status_code,
                )
            records.extend(to_contact(item) for item in results)
            after = _next_after(body)
            if after is None or not results:
                break
        else:
            self.complete = False  # more pages than MAX_PAGES: not an answer to cache
        return SearchPage(records, state)

    def rate_limit_state(self, resp: requests.Response) -> RateLimitState | None:
        # No reset: the interval header is the window's length, not the time left in it.
        state = RateLimitState(
            remaining=header_int(resp.headers, "X-HubSpot-RateLimit-Remaining"),
            amount=header_int(resp.headers, "X-HubSpot-RateLimit-Max"),
        )
        return state if state != RateLimitState() else None

    def retry_after(self, resp: requests.Response) -> float | None:
        wait = retry_after_seconds(resp.headers.get("Retry-After"))
        if wait is not None:
            return wait
        policy = _policy(resp)
        if policy == "DAILY":
            return POLICY_WAIT_S["DAILY"]  # the interval header is the burst window's
        interval_ms = header_int(resp.headers, "X-HubSpot-RateLimit-Interval-Milliseconds")
        if interval_ms:
            return interval_ms / 1000
        return POLICY_WAIT_S.get(policy or "")

    def check(self, resp: requests.Response) -> None:
        if resp.status_code == 429:
            policy = _policy(resp) or "unknown"
            raise RateLimited(
                f"HubSpot is rate limiting requests ({policy} limit).",
                retry_after_s=self.retry_after(resp),
                status_code=429,
                rate_limit=self.rate_limit_state(resp),
            )
        super().check(resp)


def _next_after(body: Mapping[str, Any]) -> str | None:
    paging = body.get("paging")
    nxt = paging.get("next") if isinstance(paging, Mapping) else None
    after = nxt.get("after") if isinstance(nxt, Mapping) else None
    return str(after) if after not in (None, "") else None


def _policy(resp: requests.Response) -> str | None:
    """The 429 body's policyName; None when the body is not HubSpot's JSON."""
    try:
        body = json.loads(resp.content)
    except (ValueError, UnicodeDecodeError):
        return None
    policy = body.get("policyName") if isinstance(body, Mapping) else None
    return policy if isinstance(policy, str) else None
