"""Pipedrive API v2 simulator: person search and person detail.

Contract reproduced (docs/contracts.md "CRMs", checked against Pipedrive's public docs):

- ``GET /api/v2/persons/search?term=N&fields=phone[&exact_match=true]&limit=&cursor=``
  (developers.pipedrive.com, "Search persons", v2). ``term`` may appear anywhere in a field
  value ("contains"); with ``exact_match`` only a full, case-insensitive match counts. The
  term needs 2 characters, or 1 with ``exact_match``. Answer:
  ``{"success": true, "data": {"items": [{"result_score", "item": {"id", "type": "person",
  "name", "phones": [...], "emails": [...], "primary_email", "organization": {"id",
  "name"} | null, "owner", "visible_to", "custom_fields", "notes"}}]},
  "additional_data": {"next_cursor": str | null}}``. The item has no creation time.
- ``GET /api/v2/persons/{id}``: the person with ``add_time`` / ``update_time`` in RFC 3339.
- ``GET /api/v2/persons?ids=1,2,...`` ("Get all persons": ``ids`` takes up to 100 ids):
  ``{"success": true, "data": [person, ...], "additional_data": {"next_cursor": null}}``;
  ids of deleted or unknown persons are left out.
- Auth: ``x-api-token: TOKEN`` for an API token, ``Authorization: Bearer TOKEN`` for an
  OAuth access token (``bearer_only = True``: the token is then only accepted as Bearer). An
  ``api_token`` in the URL is not accepted: v2 clients send it in a header, and a URL
  token ends up in logs.
  Failure: 401 ``{"success": false, "error": "unauthorized access", "errorCode": 401, ...}``
  (the ``{success, error, errorCode}`` error shape: pipedrive/client-php issue #14).
- Rate limit (pipedrive.readme.io "Rate limiting"; devcommunity.pipedrive.com thread 7462):
  ``x-ratelimit-limit``, ``x-ratelimit-remaining`` and ``x-ratelimit-reset`` (seconds left in
  the window) on every response; over the limit, 429 with ``Retry-After`` as observed there.
"""

from __future__ import annotations

import base64
import math
import re
from collections.abc import Mapping
from typing import Any

from crmsim.base import SimRequest, SimResponse, Simulator, WindowState, phones_of, seed_date

SEARCH_PATH = "/api/v2/persons/search"
LIST_PATH = "/api/v2/persons"
DEALS_PATH, LEADS_PATH = "/api/v2/deals", "/api/v1/leads"
MAX_IDS = 100
PERSON_PATH = re.compile(r"/api/v2/persons/(\d+)")
DEFAULT_LIMIT, MAX_LIMIT = 100, 500
SEARCH_FIELDS = ("name", "email", "phone", "notes", "custom_fields")


def rfc3339(value: object) -> object:
    """A seed date as Pipedrive v2 writes it (``2021-03-04T10:00:00Z``); unparseable: as is."""
    parsed = seed_date(value)
    return value if parsed is None else parsed.strftime("%Y-%m-%dT%H:%M:%SZ")


def _error(status: int, message: str) -> SimResponse:
    return SimResponse(status, {"success": False, "error": message, "errorCode": status})


def _cursor(offset: int) -> str:
    return base64.urlsafe_b64encode(f"offset:{offset}".encode()).decode()


def _offset(cursor: str | None) -> int:
    if not cursor:
        return 0
    try:
        return max(
            0, int(base64.urlsafe_b64decode(cursor.encode()).decode().removeprefix("offset:"))
        )
    except ValueError:
        return 0


class PipedriveSimulator(Simulator):
    name = "pipedrive"

    def __init__(self, *args: Any, bearer_only: bool = False, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.bearer_only = bearer_only
        self.persons = [self.to_vendor(seed, i) for i, seed in enumerate(self.contacts)]
        self.by_id = {p["id"]: p for p in self.persons}

    @staticmethod
    def to_vendor(seed: Mapping[str, Any], index: int) -> dict[str, Any]:
        """One seed contact as a v2 person (the detail shape; search items are cut from it)."""
        person_id = 1 + index
        name = seed.get("name")
        first, _, last = (name or "").partition(" ")
        created = seed.get("createdDate")
        email = seed.get("email")
        company = seed.get("company")
        return {
            "id": person_id,
            "name": name,
            "first_name": first or None,
            "last_name": last or None,
            "owner_id": 1,
            "org_id": 500 + index if company else None,
            "org_name": company,
            "phones": [
                {"value": p, "primary": n == 0, "label": "work" if n == 0 else "mobile"}
                for n, p in enumerate(phones_of(seed))
            ],
            "emails": [{"value": email, "primary": True, "label": "work"}] if email else [],
            "job_title": seed.get("title"),
            "add_time": rfc3339(created),
            "update_time": rfc3339(seed.get("mostRecentActivityDate") or created),
            "visible_to": 3,
            "notes": seed.get("notes"),
            "deals": [dict(d) for d in seed.get("deals") or []],
            "leads": [dict(d) for d in seed.get("leads") or []],
        }

    # ----- vendor hooks ----------------------------------------------------------------------
    def route(self, req: SimRequest) -> SimResponse:
        headers = {k.lower(): v for k, v in req.headers.items()}
        bearer = headers.get("authorization", "") == f"Bearer {self.token}"
        api_token = headers.get("x-api-token") == self.token
        if not (bearer if self.bearer_only else bearer or api_token):
            return SimResponse(
                401,
                {
                    "success": False,
                    "error": "unauthorized access",
                    "errorCode": 401,
                    "error_info": "Please check developers.pipedrive.com for more information "
                    "about Pipedrive API.",
                },
            )
        if req.method == "GET" and req.path == SEARCH_PATH:
            return self.search(req)
        if req.method == "GET" and req.path in (DEALS_PATH, LEADS_PATH):
            return self.related(req)
        if req.method == "GET" and req.path == LIST_PATH:
            return self.list_persons(req)
        match = PERSON_PATH.fullmatch(req.path)
        if req.method == "GET" and match:
            person = self.by_id.get(int(match[1]))
            if person is None:
                return _error(404, "Person not found")
            return SimResponse(200, {"success": True, "data": _detail(person)})
        return _error(404, "Not found")

    def search(self, req: SimRequest) -> SimResponse:
        term = req.arg("term") or ""
        exact = (req.arg("exact_match") or "").lower() in ("true", "1")
        if len(term) < (1 if exact else 2):
            return _error(400, "Search term must be at least 2 characters long")
        self.record_query(term)
        fields = [f for f in (req.arg("fields") or ",".join(SEARCH_FIELDS)).split(",") if f]
        try:
            limit = min(MAX_LIMIT, max(1, int(req.arg("limit") or DEFAULT_LIMIT)))
        except ValueError:
            return _error(400, "limit must be an integer")
        needle = term.lower()
        matches = [
            p for p in self.persons if any(_hit(v, needle, exact) for v in _searchable(p, fields))
        ]
        start = _offset(req.arg("cursor"))
        page = matches[start : start + limit]
        more = start + limit < len(matches)
        return SimResponse(
            200,
            {
                "success": True,
                "data": {
                    "items": [
                        {"result_score": 1.0 if exact else 0.5, "item": _item(p)} for p in page
                    ]
                },
                "additional_data": {"next_cursor": _cursor(start + limit) if more else None},
            },
        )

    def related(self, req: SimRequest) -> SimResponse:
        """Deals (``status`` filter) or leads of ``person_id``; seeds give ``deals`` / ``leads``
        as ``[{id, title, status | is_archived}]``. ``GET /v1/leads`` answers the leads that
        are not archived and has no ``archived_status`` any more (pipedrive/client-nodejs
        CHANGELOG: "Removed deprecated `archived_status` query parameter from leads
        endpoints"; archived ones are ``GET /v1/leads/archived``): the parameter is ignored."""
        person = self.by_id.get(int(req.arg("person_id") or 0))
        if req.path == DEALS_PATH:
            wanted = req.arg("status") or "all_not_deleted"
            items = [
                d
                for d in (person or {}).get("deals") or []
                if wanted == "all_not_deleted" or d.get("status", "open") == wanted
            ]
        else:
            items = [d for d in (person or {}).get("leads") or [] if not d.get("is_archived")]
        return SimResponse(
            200, {"success": True, "data": items, "additional_data": {"next_cursor": None}}
        )

    def list_persons(self, req: SimRequest) -> SimResponse:
        raw = [i for i in (req.arg("ids") or "").split(",") if i.strip()]
        if len(raw) > MAX_IDS or not all(i.strip().isdigit() for i in raw):
            return _error(400, f"ids must be up to {MAX_IDS} comma-separated integers")
        wanted = [int(i) for i in raw]
        people = [self.by_id[i] for i in wanted if i in self.by_id] if raw else self.persons
        return SimResponse(
            200,
            {
                "success": True,
                "data": [_detail(p) for p in people[:MAX_IDS]],
                "additional_data": {"next_cursor": None},
            },
        )

    def rate_limit_headers(self, state: WindowState) -> dict[str, str]:
        return {
            "x-ratelimit-limit": str(state.limit),
            "x-ratelimit-remaining": str(state.remaining),
            "x-ratelimit-reset": str(max(1, math.ceil(state.retry_after_s))),
        }

    def rate_limit_response(self, state: WindowState) -> SimResponse:
        return SimResponse(
            429,
            {"success": False, "error": "Request over limit", "errorCode": 429},
            {"Retry-After": str(max(1, math.ceil(state.retry_after_s)))},
        )


def _hit(value: str, needle: str, exact: bool) -> bool:
    value = value.lower()
    return value == needle if exact else needle in value


def _searchable(person: Mapping[str, Any], fields: list[str]) -> list[str]:
    values: list[str] = []
    if "phone" in fields:
        values += [p["value"] for p in person["phones"]]
    if "email" in fields:
        values += [e["value"] for e in person["emails"]]
    if "name" in fields and person["name"]:
        values.append(person["name"])
    if "notes" in fields and person.get("notes"):
        values.append(person["notes"])
    return values


def _item(person: Mapping[str, Any]) -> dict[str, Any]:
    """The search item: no add_time/update_time, phones and emails as plain strings."""
    emails = [e["value"] for e in person["emails"]]
    org = (
        {"id": person["org_id"], "name": person["org_name"], "address": None}
        if person["org_id"]
        else None
    )
    return {
        "id": person["id"],
        "type": "person",
        "name": person["name"],
        "phones": [p["value"] for p in person["phones"]],
        "emails": emails,
        "primary_email": emails[0] if emails else None,
        "visible_to": person["visible_to"],
        "owner": {"id": person["owner_id"]},
        "organization": org,
        "custom_fields": [],
        "notes": [],
    }


def _detail(person: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in person.items() if k not in ("org_name", "notes", "deals", "leads")}


SIMULATOR = PipedriveSimulator
