"""Clio Manage API v4 simulator: ``GET /api/v4/contacts.json?query=N&fields=...``.

Contract reproduced (docs/contracts.md "CRMs", checked against Clio's public docs):

- Auth: ``Authorization: Bearer TOKEN``. A wrong or missing token gets 401 with
  ``{"error": "invalid_token", "error_description": ...}`` (developers.support.clio.com,
  article 360004657734 "Expired API access token").
- Match: ``query`` is Clio's wildcard search: a contact matches when the query occurs
  (case-insensitively) anywhere in its name, title, e-mail, any phone number, any address
  field, its company's name or any custom field value (Clio API v4 docs, Contacts
  ``query``; tests/contract/fixtures/SOURCES.md). So ``102`` finds a contact at "102 Harbour St",
  and a number finds a contact whose custom field holds someone else's number: a hit is not
  a phone match. Seeds may carry ``address`` (a street line) and ``custom_fields``
  (``{name: value}``).
- ``fields``: only the fields asked for come back, nested ones as ``company{name}``; without
  ``fields`` Clio returns ``id`` and ``etag`` only, so a connector that forgets
  ``created_at`` gets no creation date, as it would from Clio.
- Dates: ``created_at`` / ``updated_at`` ISO 8601 with the account's UTC offset.
- Pagination (docs.developers.clio.com/api-docs/paging): at most ``limit`` (max 200) records,
  ordered by id; ``meta.paging.next`` is a full URL carrying ``page_token`` and omitted on
  the last page.
- Rate limit (docs.developers.clio.com/api-docs/rate-limits): ``X-RateLimit-Limit``,
  ``-Remaining`` and ``-Reset`` (epoch seconds) on every response; over the limit, 429 with
  ``Retry-After`` in seconds. The 429 body is not documented for v4; the Clio Platform API
  documents ``{"message": "Too Many Requests"}``, used here.
"""

from __future__ import annotations

import base64
import math
from collections.abc import Mapping
from datetime import timedelta, timezone
from typing import Any
from urllib.parse import urlencode

from crmsim.base import SimRequest, SimResponse, Simulator, WindowState, phones_of, seed_date

CONTACTS_PATH = "/api/v4/contacts.json"
MATTERS_PATH = "/api/v4/matters.json"
MAX_LIMIT = 200
# Clio writes times in the account's zone; a fixed Pacific offset keeps the sim deterministic.
ACCOUNT_ZONE = timezone(timedelta(hours=-8))

Fields = dict[str, "Fields | None"]


def parse_fields(text: str) -> Fields:
    """``id,name,company{id,name}`` -> ``{"id": None, "name": None, "company": {...}}``."""
    out: Fields = {}
    depth, start = 0, 0
    for i, ch in enumerate(text + ","):
        if ch == "{":
            depth += 1
        elif ch == "}":
            depth -= 1
        elif ch == "," and depth == 0:
            token = text[start:i].strip()
            start = i + 1
            if not token:
                continue
            name, brace, rest = token.partition("{")
            out[name.strip()] = parse_fields(rest.rstrip("}")) if brace else None
    return out


def project(record: Mapping[str, Any], fields: Fields) -> dict[str, Any]:
    """The record restricted to ``fields``; nested objects and lists of objects recurse."""
    out: dict[str, Any] = {}
    for name, sub in fields.items():
        if name not in record:
            continue
        value = record[name]
        if sub is not None and isinstance(value, Mapping):
            value = project(value, sub)
        elif sub is not None and isinstance(value, list):
            value = [project(v, sub) if isinstance(v, Mapping) else v for v in value]
        out[name] = value
    return out


def clio_time(value: object) -> object:
    """A seed date as Clio writes it (``2021-03-04T02:00:00-08:00``); unparseable: as is."""
    parsed = seed_date(value)
    if parsed is None:
        return value
    return parsed.astimezone(ACCOUNT_ZONE).isoformat(timespec="seconds")


def _wildcard(record: Mapping[str, Any], query: str) -> bool:
    """Clio's ``query``: the text anywhere in the fields it searches, case-insensitively."""
    texts = [record.get(k) for k in ("name", "title", "primary_email_address")]
    texts += [p.get("number") for p in record["phone_numbers"]]
    texts += [a.get(k) for a in record["addresses"] for k in ("street", "city", "postal_code")]
    texts += [c.get("value") for c in record["custom_field_values"]]
    company = record.get("company")
    if isinstance(company, Mapping):
        texts.append(company.get("name"))
    needle = query.lower()
    return any(isinstance(t, str) and needle in t.lower() for t in texts)


def _token(last_id: int) -> str:
    return base64.urlsafe_b64encode(f"after:{last_id}".encode()).decode()


def _after(token: str | None) -> int | None:
    if not token:
        return None
    try:
        return int(base64.urlsafe_b64decode(token.encode()).decode().removeprefix("after:"))
    except ValueError:
        return None


class ClioSimulator(Simulator):
    name = "clio"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.records = [self.to_vendor(seed, i) for i, seed in enumerate(self.contacts)]

    @staticmethod
    def to_vendor(seed: Mapping[str, Any], index: int) -> dict[str, Any]:
        """One seed contact as a Clio Person."""
        record_id = 1001 + index
        name = seed.get("name")
        first, _, last = (name or "").partition(" ")
        phones = phones_of(seed)
        created = seed.get("createdDate")
        company = seed.get("company")
        return {
            "id": record_id,
            "etag": f'"{record_id}-0"',
            "name": name,
            "first_name": first or None,
            "last_name": last or None,
            "type": "Person",
            "title": seed.get("title"),
            "company": {"id": 9000 + index, "name": company} if company else None,
            "primary_email_address": seed.get("email"),
            "primary_phone_number": phones[0] if phones else None,
            "phone_numbers": [
                {
                    "id": record_id * 10 + n,
                    "number": p,
                    "name": "Work" if n == 0 else "Mobile",
                    "default_number": n == 0,
                }
                for n, p in enumerate(phones)
            ],
            "addresses": (
                [{"id": record_id * 10, "name": "Work", "street": seed["address"]}]
                if isinstance(seed.get("address"), str)
                else []
            ),
            "custom_field_values": [
                {"id": f"text_line-{record_id}{n}", "field_name": k, "value": v}
                for n, (k, v) in enumerate(dict(seed.get("custom_fields") or {}).items())
            ],
            "created_at": clio_time(created),
            "updated_at": clio_time(seed.get("mostRecentActivityDate") or created),
            "matters": [dict(m) for m in seed.get("matters") or []],
        }

    # ----- vendor hooks ----------------------------------------------------------------------
    def route(self, req: SimRequest) -> SimResponse:
        headers = {k.lower(): v for k, v in req.headers.items()}
        if headers.get("authorization") != f"Bearer {self.token}":
            return SimResponse(
                401,
                {
                    "error": "invalid_token",
                    "error_description": "The access token provided is expired, revoked, "
                    "malformed or invalid for other reasons.",
                },
            )
        if req.method == "GET" and req.path == MATTERS_PATH:
            return self.matters_index(req)
        if req.method != "GET" or req.path != CONTACTS_PATH:
            return SimResponse(404, {"error": {"type": "NotFound", "message": "Not found"}})
        return self.contacts_index(req, headers.get("host", f"127.0.0.1:{self.port}"))

    def contacts_index(self, req: SimRequest, host: str) -> SimResponse:
        query = req.arg("query")
        if query is not None:
            self.record_query(query)
        try:
            limit = min(MAX_LIMIT, max(1, int(req.arg("limit") or MAX_LIMIT)))
        except ValueError:
            return SimResponse(
                400, {"error": {"type": "BadRequest", "message": "limit must be an integer"}}
            )
        matches = [r for r in self.records if query is None or _wildcard(r, query)]
        after = _after(req.arg("page_token"))
        if after is not None:
            matches = [r for r in matches if r["id"] > after]
        page, more = matches[:limit], len(matches) > limit
        fields = parse_fields(req.arg("fields") or "id,etag")
        body: dict[str, Any] = {
            "data": [project(r, fields) for r in page],
            "meta": {"paging": {}, "records": len(page)},
        }
        if more:
            body["meta"]["paging"]["next"] = self.next_link(req, host, _token(page[-1]["id"]))
        return SimResponse(200, body)

    def matters_index(self, req: SimRequest) -> SimResponse:
        """``client_id`` and ``status`` (comma-separated) filters; seeds give ``matters``."""
        client = req.arg("client_id")
        statuses = set((req.arg("status") or "open,pending,closed").split(","))
        fields = parse_fields(req.arg("fields") or "id,etag")
        found = [
            project(m, fields)
            for r in self.records
            if client is None or str(r["id"]) == client
            for m in r["matters"]
            if m.get("status", "open") in statuses
        ]
        return SimResponse(200, {"data": found, "meta": {"paging": {}, "records": len(found)}})

    def next_link(self, req: SimRequest, host: str, token: str) -> str:
        """The absolute URL of the next page, as Clio writes it."""
        params = {k: v[0] for k, v in req.query.items() if k != "page_token"}
        params["page_token"] = token
        return f"http://{host}{req.path}?{urlencode(params)}"

    def rate_limit_headers(self, state: WindowState) -> dict[str, str]:
        return {
            "X-RateLimit-Limit": str(state.limit),
            "X-RateLimit-Remaining": str(state.remaining),
            "X-RateLimit-Reset": str(math.ceil(state.reset_at)),
        }

    def rate_limit_response(self, state: WindowState) -> SimResponse:
        # Rounded up: a client that waits Retry-After must land in the next window.
        return SimResponse(
            429,
            {"message": "Too Many Requests"},
            {"Retry-After": str(max(1, math.ceil(state.retry_after_s)))},
        )


SIMULATOR = ClioSimulator
