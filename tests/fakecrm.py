"""A minimal exact-match CRM (simulator + connector) for tests of the worker and the core,
independent of any vendor's quirks. Clio-shaped: Bearer auth, X-RateLimit-* headers,
429 with Retry-After."""

from __future__ import annotations

import time
from typing import Any

from contact_lookup.connectors.base import SearchPage
from contact_lookup.connectors.http import HttpConnector
from crmsim.base import SimRequest, SimResponse, Simulator, WindowState, phones_of


class FakeCRM(Simulator):
    name = "fakecrm"
    crm = "tests.fakecrm:FakeConnector"  # the connector below, named by module:Class

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.retry_afters: list[str] = []

    def route(self, req: SimRequest) -> SimResponse:
        if req.header("Authorization") != f"Bearer {self.token}":
            return SimResponse(
                401, {"error": {"type": "AuthenticationError", "message": "invalid token"}}
            )
        query = req.arg("query") or ""
        self.record_query(query)
        data = [
            {
                "id": c["id"],
                "name": c.get("name"),
                "phones": phones_of(c),
                "created_at": c.get("createdDate"),
            }
            for c in self.contacts
            if query in phones_of(c)
        ]
        return SimResponse(200, {"data": data})

    def rate_limit_headers(self, state: WindowState) -> dict[str, str]:
        return {
            "X-RateLimit-Limit": str(state.limit),
            "X-RateLimit-Remaining": str(state.remaining),
            "X-RateLimit-Reset": str(int(state.reset_at)),
        }

    def rate_limit_response(self, state: WindowState) -> SimResponse:
        wait = str(max(1, round(state.retry_after_s)))
        self.retry_afters.append(wait)  # what was asked, for tests to compare with the wait
        return SimResponse(429, {"error": "too many requests"}, {"Retry-After": wait})


class FakeConnector(HttpConnector):
    crm = "fakecrm"

    def search(self, query: str) -> SearchPage:
        body, resp = self.request_json(
            "/contacts", params={"query": query}, headers={"Authorization": f"Bearer {self.secret}"}
        )
        records: list[dict[str, Any]] = [
            {
                "id": r["id"],
                "name": r["name"],
                "phones": r["phones"],
                "createdDate": r["created_at"],
            }
            for r in body["data"]
        ]
        return SearchPage(records, self.rate_limit_state(resp))


SEED = [
    {"id": "f-1", "name": "Ann Fake", "phone": "+14155550101", "createdDate": 1700000000},
    {
        "id": "f-2",
        "name": "Bob Fake",
        "phone": "(415) 555-0102",
        "createdDate": "2023-01-01T00:00:00Z",
    },
    {"id": "f-3", "name": "Cy Fake", "phone": "+14155550103"},
]


def fake_toml(sim: FakeCRM, name: str = "fake", **extra: Any) -> str:
    lines = [
        f"[connections.{name}]",
        f'crm = "{FakeCRM.crm}"',
        f'base_url = "{sim.url}"',
        f'token_env = "{sim.token_env}"',
        'rc_account = "111"',
    ]
    lines += [
        f"{k} = {v!r}".replace("'", '"') if isinstance(v, str) else f"{k} = {str(v).lower()}"
        for k, v in extra.items()
    ]
    return "\n".join(lines) + "\n"


def wait_for(predicate: Any, timeout_s: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.02)
    return False
