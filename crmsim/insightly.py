"""Insightly API v3.1 simulator: ``GET /v3.1/{Contacts,Leads}/Search``.

Contract reproduced (docs/contracts.md "CRMs", checked against Insightly's public material):

- ``GET /v3.1/Contacts/Search?field_name=PHONE&field_value=N&brief=false&skip=&top=``; the
  same on ``Leads/Search``. The answer is a JSON array of at most ``top`` records (default
  100, max 500), skipping ``skip``; an empty array when nothing matches. Routes are
  case-insensitive (RingCentral's own Insightly connector calls ``/contacts/search``).
- Match: ``field_value`` equals the field's value exactly. Searchable phone fields: Contacts
  ``PHONE``, ``PHONE_MOBILE`` (also ``PHONE_HOME``, ``PHONE_OTHER``); Leads ``PHONE``,
  ``MOBILE``. An unknown field name gets 400.
- Records (api.insightly.com/v3.1/Help): Contact ``CONTACT_ID, FIRST_NAME, LAST_NAME,
  TITLE, EMAIL_ADDRESS, PHONE, PHONE_MOBILE, ORGANISATION_ID, DATE_CREATED_UTC,
  DATE_UPDATED_UTC``; Lead ``LEAD_ID, FIRST_NAME, LAST_NAME, TITLE, EMAIL, PHONE, MOBILE,
  ORGANISATION_NAME, DATE_CREATED_UTC, DATE_UPDATED_UTC``. Dates are UTC as
  ``YYYY-MM-DD HH:mm:ss`` (docs/contracts.md: seen as ``2016-03-28 13:11:50``). ``brief=true``
  leaves out the sub-collections (``CUSTOMFIELDS``, ``TAGS``, ``LINKS``).
- Auth: HTTP Basic with the API key as user name and an empty password (Insightly KB
  "Working with the Insightly Web API"; nango.dev Insightly notes). Failure: 401 with the
  ASP.NET Web API body ``{"Message": "Authorization has been denied for this request."}``
  (Insightly documents the 401, not its body).
- Rate limit: ``X-RateLimit-Limit`` / ``X-RateLimit-Remaining`` on every response (Insightly
  KB); a per-plan daily limit, then 429. No reset time or ``Retry-After`` is documented, so
  none is sent.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping
from typing import Any

from crmsim.base import SimRequest, SimResponse, Simulator, WindowState, phones_of, seed_date

DEFAULT_TOP, MAX_TOP = 100, 500
# Seed phones fill these fields in order, per entity.
PHONE_FIELDS = {
    "contacts": ("PHONE", "PHONE_MOBILE", "PHONE_HOME", "PHONE_OTHER"),
    "leads": ("PHONE", "MOBILE"),
}
OTHER_FIELDS = {
    "contacts": ("FIRST_NAME", "LAST_NAME", "EMAIL_ADDRESS"),
    "leads": ("FIRST_NAME", "LAST_NAME", "EMAIL"),
}
SUBCOLLECTIONS = ("CUSTOMFIELDS", "TAGS", "LINKS")


def insightly_time(value: object) -> object:
    """A seed date as Insightly writes it (``2021-03-04 10:00:00``, UTC); unparseable: as is."""
    parsed = seed_date(value)
    return value if parsed is None else parsed.strftime("%Y-%m-%d %H:%M:%S")


def _message(status: int, message: str) -> SimResponse:
    return SimResponse(status, {"Message": message})


class InsightlySimulator(Simulator):
    name = "insightly"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.entities: dict[str, list[dict[str, Any]]] = {"contacts": [], "leads": []}
        for index, seed in enumerate(self.contacts):
            entity = "leads" if str(seed.get("type", "")).lower() == "lead" else "contacts"
            self.entities[entity].append(self.to_vendor(seed, index, entity))
        # (entity, field_name, field_value) of every search, for tests to assert on.
        self.searches: list[tuple[str, str, str]] = []
        # Linked records by (path entity, id); a Contact's LINKS point at them (seed
        # "opportunities": [{id, title, state}], "projects": [{id, title, status}]).
        self.linked: dict[tuple[str, int], dict[str, Any]] = {}
        for seed, record in zip(
            [s for s in self.contacts if str(s.get("type", "")).lower() != "lead"],
            self.entities["contacts"],
            strict=True,
        ):
            for kind, name_key, id_key, state_key, link_name in (
                (
                    "opportunities",
                    "OPPORTUNITY_NAME",
                    "OPPORTUNITY_ID",
                    "OPPORTUNITY_STATE",
                    "Opportunity",
                ),
                ("projects", "PROJECT_NAME", "PROJECT_ID", "STATUS", "Project"),
            ):
                for item in seed.get(kind) or []:
                    default = "OPEN" if kind == "opportunities" else "IN PROGRESS"
                    self.linked[kind, item["id"]] = {
                        id_key: item["id"],
                        name_key: item.get("title"),
                        state_key: item.get("state", item.get("status", default)),
                    }
                    record["LINKS"].append(
                        {
                            "LINK_ID": len(self.linked),
                            "OBJECT_NAME": "Contact",
                            "OBJECT_ID": record["CONTACT_ID"],
                            "LINK_OBJECT_NAME": link_name,
                            "LINK_OBJECT_ID": item["id"],
                        }
                    )

    @staticmethod
    def to_vendor(seed: Mapping[str, Any], index: int, entity: str) -> dict[str, Any]:
        """One seed contact as an Insightly Contact or Lead."""
        first, _, last = (seed.get("name") or "").partition(" ")
        created = seed.get("createdDate")
        record: dict[str, Any] = {
            "FIRST_NAME": first or None,
            "LAST_NAME": last or None,
            "TITLE": seed.get("title"),
            "DATE_CREATED_UTC": insightly_time(created),
            "DATE_UPDATED_UTC": insightly_time(seed.get("mostRecentActivityDate") or created),
            "CUSTOMFIELDS": [],
            "TAGS": [],
            "LINKS": [],
        }
        for field in PHONE_FIELDS[entity]:
            record[field] = None
        for field, number in zip(PHONE_FIELDS[entity], phones_of(seed), strict=False):
            record[field] = number
        if entity == "leads":
            record.update(
                LEAD_ID=2_000_001 + index,
                EMAIL=seed.get("email"),
                ORGANISATION_NAME=seed.get("company"),
            )
        else:
            record.update(
                CONTACT_ID=1_000_001 + index,
                EMAIL_ADDRESS=seed.get("email"),
                ORGANISATION_ID=3_000_001 + index if seed.get("company") else None,
            )
        return record

    # ----- vendor hooks ----------------------------------------------------------------------
    def authorised(self, req: SimRequest) -> bool:
        headers = {k.lower(): v for k, v in req.headers.items()}
        scheme, _, encoded = headers.get("authorization", "").partition(" ")
        if scheme.lower() != "basic":
            return False
        try:
            user, _, _password = base64.b64decode(encoded, validate=True).decode().partition(":")
        except (binascii.Error, UnicodeDecodeError):
            return False
        return user == self.token

    def route(self, req: SimRequest) -> SimResponse:
        if not self.authorised(req):
            return _message(401, "Authorization has been denied for this request.")
        parts = req.path.lower().strip("/").split("/")
        if (
            req.method == "GET"
            and len(parts) == 4
            and parts[1] == "contacts"
            and parts[3] == "links"
        ):
            found = [c for c in self.entities["contacts"] if str(c["CONTACT_ID"]) == parts[2]]
            if not found:
                return _message(404, "Contact not found.")
            return SimResponse(200, found[0]["LINKS"])
        if req.method == "GET" and len(parts) == 3 and parts[1] in ("opportunities", "projects"):
            item = self.linked.get((parts[1], int(parts[2]) if parts[2].isdigit() else -1))
            if item is None:
                return _message(404, "Record not found.")
            return SimResponse(200, item)
        if (
            req.method != "GET"
            or len(parts) != 3
            or parts[0] != "v3.1"
            or parts[2] != "search"
            or parts[1] not in self.entities
        ):
            return _message(404, "No HTTP resource was found that matches the request URI.")
        return self.search(req, parts[1])

    def search(self, req: SimRequest, entity: str) -> SimResponse:
        field = (req.arg("field_name") or "").upper()
        value = req.arg("field_value")
        if value is None or field not in PHONE_FIELDS[entity] + OTHER_FIELDS[entity]:
            return _message(400, f"Invalid field_name '{field}' for {entity}.")
        try:
            skip = max(0, int(req.arg("skip") or 0))
            top = min(MAX_TOP, max(1, int(req.arg("top") or DEFAULT_TOP)))
        except ValueError:
            return _message(400, "skip and top must be integers.")
        self.record_query(value)
        with self.lock:
            self.searches.append((entity, field, value))
        brief = (req.arg("brief") or "false").lower() == "true"
        matches = [r for r in self.entities[entity] if r.get(field) == value]
        page = matches[skip : skip + top]
        if brief:
            page = [{k: v for k, v in r.items() if k not in SUBCOLLECTIONS} for r in page]
        return SimResponse(200, page)

    def rate_limit_headers(self, state: WindowState) -> dict[str, str]:
        return {
            "X-RateLimit-Limit": str(state.limit),
            "X-RateLimit-Remaining": str(state.remaining),
        }

    def rate_limit_response(self, state: WindowState) -> SimResponse:
        return _message(429, "API rate limit exceeded.")


SIMULATOR = InsightlySimulator
