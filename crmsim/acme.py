"""Acme simulator: the in-house CRM of the example connector plugin (examples/plugin).

The API it serves is the one documented in examples/plugin/src/contact_lookup_acme: exact
phone match on ``GET /v1/people?phone=``, ``Authorization: Token KEY``, ``next`` URL paging
(``limit`` per page, default 50), dates ``YYYY-MM-DD HH:MM:SS`` UTC, ``RateLimit-*`` headers
with the reset in seconds, 429 with ``Retry-After``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlencode

from crmsim.base import SimRequest, SimResponse, Simulator, WindowState, phones_of, seed_date

PEOPLE_PATH = "/v1/people"


def acme_time(value: object) -> str | None:
    parsed = seed_date(value)
    return None if parsed is None else parsed.strftime("%Y-%m-%d %H:%M:%S")


class AcmeSimulator(Simulator):
    name = "acme"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.page_size = 50
        self.people = [self.to_vendor(seed, i) for i, seed in enumerate(self.contacts)]

    @staticmethod
    def to_vendor(seed: Mapping[str, Any], index: int) -> dict[str, Any]:
        return {
            "ref": f"A-{1000 + index}",
            "display_name": seed.get("name"),
            "kind": seed.get("type"),
            "numbers": phones_of(seed),
            "email": seed.get("email"),
            "org": seed.get("company"),
            "job": seed.get("title"),
            "created_on": acme_time(seed.get("createdDate")),
            "last_seen": acme_time(seed.get("mostRecentActivityDate")),
        }

    def route(self, req: SimRequest) -> SimResponse:
        if req.header("Authorization") != f"Token {self.token}":
            return SimResponse(401, {"detail": "Invalid token."})
        if req.method != "GET" or req.path != PEOPLE_PATH:
            return SimResponse(404, {"detail": "Not found."})
        number = req.arg("phone") or ""
        self.record_query(number)
        matches = [p for p in self.people if number in p["numbers"]]
        after = int(req.arg("after") or 0)
        page = matches[after : after + self.page_size]
        more = after + self.page_size < len(matches)
        query = urlencode({"phone": number, "after": after + self.page_size})
        return SimResponse(
            200, {"results": page, "next": f"{self.url}{PEOPLE_PATH}?{query}" if more else None}
        )

    def rate_limit_headers(self, state: WindowState) -> dict[str, str]:
        return {
            "RateLimit-Limit": str(state.limit),
            "RateLimit-Remaining": str(state.remaining),
            "RateLimit-Reset": str(max(1, math.ceil(state.retry_after_s))),
        }


SIMULATOR = AcmeSimulator
