"""``crm = "hubspot"``: HubSpot CRM v3 contact search with a Bearer token.

Connection: ``base_url`` (``https://api.hubapi.com``); ``token_env`` names the variable holding
a private-app or OAuth access token. Option ``page_size`` (1-200, default 100) is the search
``limit``.

Search: one ``POST /crm/v3/objects/contacts/search`` per query, two filter groups ORed:
``phone EQ N`` and ``mobilephone EQ N``; ``paging.next.after`` is followed for at most
``MAX_PAGES`` pages (a number shared by more contacts than that is not a person to pop).

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
from collections.abc import Mapping
from typing import Any

import requests

from contact_lookup.connectors.base import PHONES, Option, SearchPage
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


def search_body(number: str, limit: int, after: str | None) -> dict[str, Any]:
    body: dict[str, Any] = {
        "filterGroups": [
            {"filters": [{"propertyName": prop, "operator": "EQ", "value": number}]}
            for prop in PHONE_PROPERTIES
        ],
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
        ``associations.contact EQ id`` and ``hs_is_closed EQ false`` (HubSpot CRM search
        docs, "search by associations"), up to 100; each ``{"const": id, "title": dealname,
        "id": id}``."""
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

    def search(self, query: str) -> SearchPage:
        size = self.int_option("page_size", DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE)
        records: list[dict[str, Any]] = []
        after: str | None = None
        state: RateLimitState | None = None
        for _ in range(MAX_PAGES):
            body, resp = self.request_json(
                SEARCH_PATH,
                method="POST",
                json=search_body(query, size, after),
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
