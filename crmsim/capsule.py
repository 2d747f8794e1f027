"""Capsule CRM API v2 simulator: ``GET /api/v2/parties/search?q=N``.

A CRM the product has no Python connector for: it is reached through ``crm = "rest"`` and the
template ``examples/rest/capsule.toml``. Contract reproduced from Capsule's public docs:

- Search (developer.capsulecrm.com/v2/operations/Party, "Search parties"): ``q`` is matched
  like Capsule's global search (names, e-mail addresses, phone numbers, addresses, custom
  fields; the docs do not define the matching, so this simulator does a case-insensitive
  "contains", the widest reading). ``page`` (from 1) and ``perPage`` (1-100, default 50).
  Answer: ``{"parties": [Party, ...]}``; the next page is announced in a ``Link`` header with
  ``rel="next"`` (developer.capsulecrm.com/v2/overview/reading-from-the-api, "Pagination").
- Party (same pages): ``id``, ``type`` (``person``), ``firstName``, ``lastName``, ``jobTitle``,
  ``organisation`` (``{"id", "name"}`` or null), ``createdAt`` / ``updatedAt`` /
  ``lastContactedAt`` in ISO 8601 UTC (``2015-09-15T10:43:23Z``), ``phoneNumbers``
  (``[{"id", "type", "number"}]``), ``emailAddresses`` (``[{"id", "type", "address"}]``).
- Auth: ``Authorization: Bearer TOKEN`` (reading-from-the-api). The 401 body is not shown in
  the docs; ``{"message": "..."}`` here follows their general error shape.
- Rate limit (developer.capsulecrm.com/v2/overview/handling-api-responses): 4,000 requests
  per hour per user; ``X-RateLimit-Limit``, ``X-RateLimit-Remaining`` and
  ``X-RateLimit-Reset`` (UTC epoch seconds) on every answer; over it, 429 with the same
  headers and ``{"error": "rate limit reached"}``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlencode

from crmsim.base import SimRequest, SimResponse, Simulator, WindowState, phones_of, seed_date

SEARCH_PATH = "/api/v2/parties/search"
DEFAULT_PER_PAGE, MAX_PER_PAGE = 50, 100


def iso(value: object) -> str | None:
    parsed = seed_date(value)
    return None if parsed is None else parsed.strftime("%Y-%m-%dT%H:%M:%SZ")


class CapsuleSimulator(Simulator):
    name = "capsule"
    crm = "rest"
    default_rate_limit = (4000, 3600.0)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.parties = [self.to_vendor(seed, i) for i, seed in enumerate(self.contacts)]

    @staticmethod
    def to_vendor(seed: Mapping[str, Any], index: int) -> dict[str, Any]:
        first, _, last = (seed.get("name") or "").partition(" ")
        company = seed.get("company")
        email = seed.get("email")
        party_id = 11000 + index
        return {
            "id": party_id,
            "type": "person",
            "about": None,
            "title": None,
            "firstName": first or None,
            "lastName": last or None,
            "jobTitle": seed.get("title"),
            "createdAt": iso(seed.get("createdDate")),
            "updatedAt": iso(seed.get("mostRecentActivityDate") or seed.get("createdDate")),
            "organisation": {"id": 500 + index, "name": company} if company else None,
            "lastContactedAt": iso(seed.get("mostRecentActivityDate")),
            "addresses": (
                [{"id": 1, "type": None, "street": seed["address"]}] if seed.get("address") else []
            ),
            "phoneNumbers": [
                {"id": party_id * 10 + n, "type": None, "number": p}
                for n, p in enumerate(phones_of(seed))
            ],
            "emailAddresses": (
                [{"id": party_id * 10, "type": "Work", "address": email}] if email else []
            ),
            "fields": [
                {"definition": {"name": k}, "value": v}
                for k, v in (seed.get("custom_fields") or {}).items()
            ],
        }

    def route(self, req: SimRequest) -> SimResponse:
        auth = {k.lower(): v for k, v in req.headers.items()}.get("authorization")
        if auth != f"Bearer {self.token}":
            return SimResponse(401, {"message": "Authentication failed"})
        if req.method == "GET" and req.path == SEARCH_PATH:
            return self.search(req)
        return SimResponse(404, {"message": "Could not find resource"})

    def search(self, req: SimRequest) -> SimResponse:
        q = (req.arg("q") or "").strip().lower()
        if not q:
            return SimResponse(400, {"message": "q is required"})
        self.record_query(req.arg("q") or "")
        try:
            page = max(1, int(req.arg("page") or 1))
            per_page = int(req.arg("perPage") or DEFAULT_PER_PAGE)
        except ValueError:
            return SimResponse(400, {"message": "page and perPage must be integers"})
        if not 1 <= per_page <= MAX_PER_PAGE:
            return SimResponse(400, {"message": "perPage must be between 1 and 100"})
        matches = [p for p in self.parties if any(q in text.lower() for text in _texts(p))]
        start = (page - 1) * per_page
        headers = {}
        if start + per_page < len(matches):
            query = urlencode({"q": req.arg("q"), "page": page + 1, "perPage": per_page})
            headers["Link"] = f'<{self.url}{SEARCH_PATH}?{query}>; rel="next"'
        return SimResponse(200, {"parties": matches[start : start + per_page]}, headers)

    def rate_limit_headers(self, state: WindowState) -> dict[str, str]:
        return {
            "X-RateLimit-Limit": str(state.limit),
            "X-RateLimit-Remaining": str(state.remaining),
            "X-RateLimit-Reset": str(math.ceil(state.reset_at)),
        }

    def rate_limit_response(self, state: WindowState) -> SimResponse:
        return SimResponse(429, {"error": "rate limit reached"})


def _texts(party: Mapping[str, Any]) -> list[str]:
    """What Capsule's global search looks at, as text."""
    out = [party.get("firstName") or "", party.get("lastName") or ""]
    out += [p["number"] for p in party["phoneNumbers"]]
    out += [e["address"] for e in party["emailAddresses"]]
    out += [a.get("street") or "" for a in party["addresses"]]
    out += [str(f["value"]) for f in party["fields"]]
    return out


SIMULATOR = CapsuleSimulator
