"""HubSpot CRM v3 search simulator: filterGroups, properties, limit/after paging, Bearer auth.

The vendor contract reproduced here (HubSpot "Search the CRM",
https://developers.hubspot.com/docs/api-reference/crm/search-the-crm, and the developer
changelog for the search limits):

* ``POST /crm/v3/objects/contacts/search`` with ``Authorization: Bearer T`` and a JSON body
  ``{filterGroups: [{filters: [{propertyName, operator, value}]}], properties, limit, after}``.
  Filters within a group are ANDed, groups are ORed. At most 5 groups, 10 filters in a group
  and 25 in all (changelog "Expanded filtering capabilities", 2024-08-26); ``limit`` at most
  200 (default 10); paging stops at 10,000 results. Beyond a limit: 400 ``VALIDATION_ERROR``.
* Operators: ``EQ``/``NEQ`` compare the stored string, case-insensitively, with no phone
  normalisation: ``+14155550100`` does not equal ``(415) 555-0100``. Also ``IN``,
  ``HAS_PROPERTY``, ``NOT_HAS_PROPERTY`` and ``CONTAINS_TOKEN`` (whole tokens, ``*`` wildcard).
  Full-text ``query`` is not simulated (400).
* Answer ``{total, results: [{id, properties, createdAt, updatedAt, archived}], paging?}``
  with ``paging.next.after`` only while more results remain. ``properties`` holds the ones
  asked for plus ``createdate``, ``hs_object_id`` and ``lastmodifieddate``; dates are ISO 8601
  with milliseconds and ``Z``.
* 401 ``{status: "error", message, correlationId, category: "INVALID_AUTHENTICATION"}``.
* Rate limit (search: about 5 requests/s per token): 429 ``{status: "error", message,
  errorType: "RATE_LIMIT", correlationId, policyName}`` and ``X-HubSpot-RateLimit-Max``,
  ``-Remaining``, ``-Interval-Milliseconds`` (plus ``-Secondly``/``-Secondly-Remaining`` for a
  one-second window) while a limit is set. HubSpot's community reports the search endpoints
  sometimes omit these headers, so the connector treats them as optional.

Seed records become contacts: ``name`` splits at its first space into ``firstname`` and
``lastname``; ``phone``/``phones`` fill ``phone`` then ``mobilephone`` (further numbers have no
standard property and are dropped); ``title`` -> ``jobtitle``; ``company``; ``email``;
``createdDate`` -> ``createdate``/``createdAt``; ``mostRecentActivityDate`` ->
``lastmodifieddate``/``updatedAt`` (null when the seed has none). Ids are kept as they are.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterable, Mapping
from datetime import datetime
from pathlib import Path
from typing import Any

from crmsim.base import SimRequest, SimResponse, Simulator, WindowState, phones_of, seed_date

SEARCH_PATH = "/crm/v3/objects/contacts/search"
DEALS_SEARCH_PATH = "/crm/v3/objects/deals/search"
MAX_GROUPS, MAX_FILTERS_PER_GROUP, MAX_FILTERS = 5, 10, 25
DEFAULT_LIMIT, MAX_LIMIT, MAX_RESULTS = 10, 200, 10_000
ALWAYS = ("createdate", "hs_object_id", "lastmodifieddate")
DEFAULT_PROPERTIES = (
    "createdate",
    "email",
    "firstname",
    "hs_object_id",
    "lastmodifieddate",
    "lastname",
)
_TOKENS = re.compile(r"[\w@.]+")


def iso_ms(value: object) -> str | None:
    """A seed date as HubSpot writes it: ``2024-01-01T00:00:00.000Z``."""
    when: datetime | None = seed_date(value)
    if when is None:
        return None
    return when.strftime("%Y-%m-%dT%H:%M:%S.") + f"{when.microsecond // 1000:03d}Z"


def to_record(seed: Mapping[str, Any], index: int) -> dict[str, Any]:
    rid = str(seed.get("id", index + 1))
    first, _, last = str(seed.get("name") or "").partition(" ")
    phones = [*phones_of(seed), None, None]
    created, modified = iso_ms(seed.get("createdDate")), iso_ms(seed.get("mostRecentActivityDate"))
    properties = {
        "firstname": first or None,
        "lastname": last or None,
        "email": seed.get("email"),
        "phone": phones[0],
        "mobilephone": phones[1],
        "jobtitle": seed.get("title"),
        "company": seed.get("company"),
        "createdate": created,
        "lastmodifieddate": modified,
        "hs_object_id": rid,
        "lifecyclestage": "lead" if seed.get("type") == "Lead" else "customer",
    }
    return {
        "id": rid,
        "properties": properties,
        "createdAt": created,
        "updatedAt": modified,
        "archived": False,
    }


def _error(status: int, category: str, message: str, **extra: Any) -> SimResponse:
    return SimResponse(
        status,
        {
            "status": "error",
            "message": message,
            "correlationId": str(uuid.uuid4()),
            "category": category,
            **extra,
        },
    )


class FilterError(ValueError):
    pass


def _matches(record: Mapping[str, Any], flt: Any) -> bool:
    if not isinstance(flt, Mapping) or not isinstance(flt.get("propertyName"), str):
        raise FilterError("Each filter needs a propertyName and an operator.")
    stored = record["properties"].get(flt["propertyName"])
    operator, value = flt.get("operator"), flt.get("value")
    text = None if stored is None else str(stored).lower()
    if operator == "HAS_PROPERTY":
        return stored not in (None, "")
    if operator == "NOT_HAS_PROPERTY":
        return stored in (None, "")
    if operator in ("EQ", "NEQ"):
        if value is None:
            raise FilterError(f"Operator {operator} needs a value.")
        equal = text is not None and text == str(value).lower()
        return equal if operator == "EQ" else not equal
    if operator == "IN":
        values = flt.get("values")
        if not isinstance(values, list):
            raise FilterError("Operator IN needs a values list.")
        return text is not None and text in {str(v).lower() for v in values}
    if operator == "CONTAINS_TOKEN":
        pattern = re.escape(str(value).lower()).replace(r"\*", r"[\w@.]*")
        return text is not None and any(re.fullmatch(pattern, t) for t in _TOKENS.findall(text))
    raise FilterError(f"Operator {operator!r} is not supported by the simulator.")


class HubSpotSimulator(Simulator):
    name = "hubspot"

    def __init__(
        self, contacts: str | Path | Iterable[Mapping[str, Any]] = (), **kwargs: Any
    ) -> None:
        super().__init__(contacts, **kwargs)
        self.records = [to_record(seed, i) for i, seed in enumerate(self.contacts)]
        # Deals associated with each contact (seed "deals": [{id, title, status}]).
        self.deals = [
            (record["id"], deal)
            for seed, record in zip(self.contacts, self.records, strict=True)
            for deal in seed.get("deals") or []
        ]

    def route(self, req: SimRequest) -> SimResponse:
        if req.header("Authorization") != f"Bearer {self.token}":
            return _error(
                401,
                "INVALID_AUTHENTICATION",
                "Authentication credentials not found. This API supports OAuth 2.0 "
                "authentication and you can find more details at "
                "https://developers.hubspot.com/docs/methods/auth/oauth-overview",
            )
        if req.path == DEALS_SEARCH_PATH and req.method == "POST":
            return self._deals(req)
        if req.path != SEARCH_PATH:
            return _error(404, "OBJECT_NOT_FOUND", f"Unable to route {req.method} {req.path}")
        if req.method != "POST":
            return _error(405, "METHOD_NOT_ALLOWED", "The search endpoint accepts POST only.")
        return self._search(req)

    def rate_limit_headers(self, state: WindowState) -> dict[str, str]:
        headers = {
            "X-HubSpot-RateLimit-Max": str(state.limit),
            "X-HubSpot-RateLimit-Remaining": str(state.remaining),
            "X-HubSpot-RateLimit-Interval-Milliseconds": str(int(state.window_s * 1000)),
        }
        if state.window_s == 1:
            headers["X-HubSpot-RateLimit-Secondly"] = str(state.limit)
            headers["X-HubSpot-RateLimit-Secondly-Remaining"] = str(state.remaining)
        return headers

    def rate_limit_response(self, state: WindowState) -> SimResponse:
        policy = (
            "SECONDLY"
            if state.window_s <= 1
            else "DAILY"
            if state.window_s >= 86_400
            else "TEN_SECONDLY_ROLLING"
        )
        return SimResponse(
            429,
            {
                "status": "error",
                "message": f"You have reached your {policy.lower()} limit.",
                "errorType": "RATE_LIMIT",
                "correlationId": str(uuid.uuid4()),
                "policyName": policy,
                "groupName": "publicapi:crm-search",
            },
        )

    def _deals(self, req: SimRequest) -> SimResponse:
        """Deal search with the documented ``associations.contact`` and ``hs_is_closed``
        filters (developers.hubspot.com CRM search: "search by associations")."""
        body = req.json() if isinstance(req.json(), Mapping) else {}
        filters = {
            f.get("propertyName"): str(f.get("value"))
            for g in body.get("filterGroups") or []
            for f in g.get("filters") or []
            if isinstance(f, Mapping)
        }
        contact = filters.get("associations.contact")
        closed = filters.get("hs_is_closed")
        found = [
            {
                "id": str(deal["id"]),
                "properties": {
                    "dealname": deal.get("title"),
                    "hs_is_closed": str(deal.get("status", "open") != "open").lower(),
                    "hs_object_id": str(deal["id"]),
                },
                "archived": False,
            }
            for owner, deal in self.deals
            if (contact is None or str(owner) == contact)
            and (closed is None or str(deal.get("status", "open") != "open").lower() == closed)
        ]
        return SimResponse(200, {"total": len(found), "results": found})

    def _search(self, req: SimRequest) -> SimResponse:
        body = req.json()
        if not isinstance(body, Mapping):
            return _error(400, "VALIDATION_ERROR", "The request body must be a JSON object.")
        if body.get("query"):
            return _error(400, "VALIDATION_ERROR", "Full-text query is not simulated.")
        groups = body.get("filterGroups") or []
        try:
            limit = int(body.get("limit") or DEFAULT_LIMIT)
            offset = int(body.get("after") or 0)
        except (TypeError, ValueError):
            return _error(400, "VALIDATION_ERROR", "limit and after must be integers.")
        problem = self._validate(groups, limit, offset)
        if problem:
            return _error(400, "VALIDATION_ERROR", problem)
        phone_values = [
            str(f.get("value"))
            for g in groups
            for f in g["filters"]
            if isinstance(f, Mapping)
            and f.get("operator") == "EQ"
            and f.get("propertyName") in ("phone", "mobilephone")
        ]
        for value in dict.fromkeys(phone_values):
            self.record_query(value)
        try:
            matched = [
                r
                for r in self.records
                if not groups or any(all(_matches(r, f) for f in g["filters"]) for g in groups)
            ]
        except FilterError as exc:
            return _error(400, "VALIDATION_ERROR", str(exc))
        wanted = body.get("properties") or DEFAULT_PROPERTIES
        page = matched[offset : offset + limit]
        out: dict[str, Any] = {
            "total": len(matched),
            "results": [self._present(r, wanted) for r in page],
        }
        if offset + limit < len(matched):
            out["paging"] = {"next": {"after": str(offset + limit)}}
        return SimResponse(200, out)

    @staticmethod
    def _validate(groups: Any, limit: int, offset: int) -> str | None:
        if not isinstance(groups, list) or not all(
            isinstance(g, Mapping) and isinstance(g.get("filters"), list) for g in groups
        ):
            return "filterGroups must be a list of {filters: [...]}."
        if len(groups) > MAX_GROUPS:
            return f"Too many filter groups ({len(groups)}); the limit is {MAX_GROUPS}."
        sizes = [len(g["filters"]) for g in groups]
        if any(n > MAX_FILTERS_PER_GROUP for n in sizes) or sum(sizes) > MAX_FILTERS:
            return (
                f"Too many filters: at most {MAX_FILTERS_PER_GROUP} in a group and "
                f"{MAX_FILTERS} in all."
            )
        if not 1 <= limit <= MAX_LIMIT:
            return f"limit must be between 1 and {MAX_LIMIT}."
        if offset < 0 or offset + limit > MAX_RESULTS:
            return f"Search results are limited to {MAX_RESULTS} records."
        return None

    @staticmethod
    def _present(record: Mapping[str, Any], wanted: Iterable[Any]) -> dict[str, Any]:
        props = record["properties"]
        names = dict.fromkeys([*(str(w) for w in wanted), *ALWAYS])
        return {
            "id": record["id"],
            "properties": {n: props[n] for n in names if n in props},
            "createdAt": record["createdAt"],
            "updatedAt": record["updatedAt"],
            "archived": record["archived"],
        }


SIMULATOR = HubSpotSimulator
