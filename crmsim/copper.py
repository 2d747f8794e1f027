"""Copper Developer API v1 simulator: ``POST /developer_api/v1/people/search``.

A CRM the product has no Python connector for: it is reached through ``crm = "rest"`` and the
template ``examples/rest/copper.toml``. Contract reproduced from Copper's public docs:

- Search (developer.copper.com/people/list-people-search.html, "List People (Search)"): a JSON
  body with ``phone_number``, ``page_number`` (from 1, default 1) and ``page_size`` (default
  20, at most 200); criteria are ANDed. The answer is a bare JSON array of people; a page
  shorter than ``page_size`` is the last. The docs do not say how ``phone_number`` matches;
  this simulator matches a stored number equal to it, or with the same digits.
- Person (developer.copper.com, "People"): ``id``, ``name``, ``first_name``, ``last_name``,
  ``title``, ``company_name``, ``emails`` (``[{"email", "category"}]``), ``phone_numbers``
  (``[{"number", "category"}]``), ``date_created`` / ``date_modified`` /
  ``date_last_contacted`` as Unix seconds.
- Auth (developer.copper.com, "Authentication"): every request carries ``X-PW-AccessToken``
  (the API key), ``X-PW-Application: developer_api`` and ``X-PW-UserEmail``; otherwise 401.
  The 401 body is not documented; ``{"success": false, "status": 401, "message": ...}`` here.
- Rate limit (developer.copper.com, "Rate Limits"): 180 requests per minute per user, then
  429. No rate-limit headers are documented, so none are sent.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from crmsim.base import SimRequest, SimResponse, Simulator, WindowState, phones_of, seed_date

SEARCH_PATH = "/developer_api/v1/people/search"
DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE = 20, 200
USER_EMAIL = "owner@example.com"  # the key owner's e-mail (examples/rest/copper.toml)
_NON_DIGITS = re.compile(r"\D")


def unix(value: object) -> int | None:
    parsed = seed_date(value)
    return None if parsed is None else int(parsed.timestamp())


def _error(status: int, message: str) -> SimResponse:
    return SimResponse(status, {"success": False, "status": status, "message": message})


class CopperSimulator(Simulator):
    name = "copper"
    crm = "rest"
    default_rate_limit = (180, 60.0)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.people = [self.to_vendor(seed, i) for i, seed in enumerate(self.contacts)]

    @staticmethod
    def to_vendor(seed: Mapping[str, Any], index: int) -> dict[str, Any]:
        first, _, last = (seed.get("name") or "").partition(" ")
        email = seed.get("email")
        return {
            "id": 27140000 + index,
            "name": seed.get("name"),
            "prefix": None,
            "first_name": first or None,
            "middle_name": None,
            "last_name": last or None,
            "suffix": None,
            "title": seed.get("title"),
            "company_id": 900 + index if seed.get("company") else None,
            "company_name": seed.get("company"),
            "emails": [{"email": email, "category": "work"}] if email else [],
            "phone_numbers": [
                {"number": p, "category": "work" if n == 0 else "mobile"}
                for n, p in enumerate(phones_of(seed))
            ],
            "date_created": unix(seed.get("createdDate")),
            "date_modified": unix(seed.get("mostRecentActivityDate") or seed.get("createdDate")),
            "date_last_contacted": unix(seed.get("mostRecentActivityDate")),
            "interaction_count": 0,
        }

    def route(self, req: SimRequest) -> SimResponse:
        h = {k.lower(): v for k, v in req.headers.items()}
        if (
            h.get("x-pw-accesstoken") != self.token
            or h.get("x-pw-application") != "developer_api"
            or h.get("x-pw-useremail") != USER_EMAIL
        ):
            return _error(401, "Invalid authentication credentials")
        if req.method == "POST" and req.path == SEARCH_PATH:
            return self.search(req)
        return _error(404, "Resource not found")

    def search(self, req: SimRequest) -> SimResponse:
        body = req.json()
        if not isinstance(body, dict):
            return _error(400, "Request body must be a JSON object")
        number = body.get("phone_number")
        page, size = body.get("page_number", 1), body.get("page_size", DEFAULT_PAGE_SIZE)
        if not isinstance(page, int) or not isinstance(size, int) or page < 1:
            return _error(400, "page_number and page_size must be positive integers")
        if not 1 <= size <= MAX_PAGE_SIZE:
            return _error(400, f"page_size must be at most {MAX_PAGE_SIZE}")
        matches = self.people
        if isinstance(number, str):
            self.record_query(number)
            digits = _NON_DIGITS.sub("", number)
            matches = [
                p
                for p in self.people
                if any(
                    n["number"] == number or (digits and _NON_DIGITS.sub("", n["number"]) == digits)
                    for n in p["phone_numbers"]
                )
            ]
        start = (page - 1) * size
        return SimResponse(200, matches[start : start + size])

    def rate_limit_response(self, state: WindowState) -> SimResponse:
        return _error(429, "Rate limit exceeded")


SIMULATOR = CopperSimulator
