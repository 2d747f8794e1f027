"""``crm = "acme"``: the Acme in-house CRM, as a connector plugin (an example).

The Acme API (as its owners document it for this example; simulator: crmsim/acme.py):

- ``GET /v1/people?phone=QUERY`` with ``Authorization: Token KEY``; the phone must equal a
  stored number exactly. Answer ``{"results": [person, ...], "next": URL | null}``; a person
  is ``{"ref", "display_name", "kind", "numbers": [str], "email", "org", "job",
  "created_on", "last_seen"}`` with dates as ``YYYY-MM-DD HH:MM:SS`` in UTC.
- Rate limit: ``RateLimit-Limit``, ``RateLimit-Remaining``, ``RateLimit-Reset`` (seconds
  left in the window) on every answer; 429 with ``Retry-After`` when over it.
- 401 for a wrong key, 5xx when it is down.

What the connector owes the product (README "Write a connector"): ``search`` returns the
records of one query in the spec's field names, with ``phones`` (every number the record
holds) and the matched ``phone``; dates as the CRM wrote them (the core normalises them);
the vendor's rate-limit state; and errors raised as the product's error tree, which
``HttpConnector.check`` already does for plain HTTP statuses.
"""

from __future__ import annotations

import time
from typing import Any

import requests

from contact_lookup.connectors.base import Option, SearchPage
from contact_lookup.connectors.http import HttpConnector, header_int
from contact_lookup.model.errors import CRMUnavailable, RateLimitState

__all__ = ["AcmeConnector"]


class AcmeConnector(HttpConnector):
    crm = "acme"
    default_rate_limit = (60, 60.0)  # Acme allows 60 searches a minute per key
    options = {"max_pages": Option(int, "pages of results read per query", 3, 1, 10)}

    def search(self, query: str) -> SearchPage:
        records: list[dict[str, Any]] = []
        state = None
        url: str | None = "v1/people"
        params: dict[str, str] | None = {"phone": query}
        for _ in range(int(self.connection.options.get("max_pages", 3))):
            if url is None:
                break
            body, resp = self.request_json(
                url, params=params, headers={"Authorization": f"Token {self.secret}"}
            )
            state = self.rate_limit_state(resp) or state
            if not isinstance(body, dict) or not isinstance(body.get("results"), list):
                raise CRMUnavailable("Acme answered without results.", status_code=200)
            records += [self.record(p, query) for p in body["results"]]
            url, params = body.get("next"), None  # the next URL carries its own query
        return SearchPage(records, state)

    @staticmethod
    def record(person: dict[str, Any], query: str) -> dict[str, Any]:
        numbers = [n for n in person.get("numbers") or [] if isinstance(n, str)]
        return {
            "id": person.get("ref"),
            "name": person.get("display_name"),
            "type": person.get("kind"),
            "phone": query if query in numbers else None,
            "phones": numbers,
            "email": person.get("email"),
            "company": person.get("org"),
            "title": person.get("job"),
            "createdDate": person.get("created_on"),
            "mostRecentActivityDate": person.get("last_seen"),
        }

    def rate_limit_state(self, resp: requests.Response) -> RateLimitState | None:
        h = resp.headers
        reset_in = header_int(h, "RateLimit-Reset")
        state = RateLimitState(
            remaining=header_int(h, "RateLimit-Remaining"),
            amount=header_int(h, "RateLimit-Limit"),
            reset=None if reset_in is None else time.time() + reset_in,
        )
        return state if state != RateLimitState() else None
