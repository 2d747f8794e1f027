"""``crm = "insightly"``: Insightly API v3.1, exact match on one phone field per search.

Config: ``base_url`` (the account's API URL, e.g. ``https://api.na1.insightly.com``, with or
without the ``/v3.1`` Insightly shows in User Settings) and ``token_env`` naming the user's
API key, sent as HTTP Basic ``base64("KEY:")``.

Insightly searches one field at a time, so one query is four searches: Contacts by ``PHONE``
and ``PHONE_MOBILE``, Leads by ``PHONE`` and ``MOBILE`` (the fields RingCentral's own
Insightly connector searches), each paged with ``skip``/``top`` up to ``max_pages``.
Rate limit: a per-plan daily limit reported as ``X-RateLimit-Limit``/``-Remaining`` (the base
class's default reading; no reset is documented) and 429.
"""

from __future__ import annotations

import base64
from collections.abc import Mapping
from typing import Any

from contact_lookup.connectors.base import PHONES, Option, SearchPage
from contact_lookup.connectors.http import HttpConnector
from contact_lookup.model.errors import CRMUnavailable, RateLimitState

# Every phone field of each entity (Insightly v3.1 Contact and Lead models), for verification.
PHONE_FIELDS = {
    "Contact": (
        "PHONE",
        "PHONE_HOME",
        "PHONE_MOBILE",
        "PHONE_OTHER",
        "PHONE_ASSISTANT",
        "PHONE_FAX",
    ),
    "Lead": ("PHONE", "MOBILE", "FAX"),
}
# (entity path, phone field, id field, email field, spec type)
SEARCHES = (
    ("Contacts", "PHONE", "CONTACT_ID", "EMAIL_ADDRESS", "Contact"),
    ("Contacts", "PHONE_MOBILE", "CONTACT_ID", "EMAIL_ADDRESS", "Contact"),
    ("Leads", "PHONE", "LEAD_ID", "EMAIL", "Lead"),
    ("Leads", "MOBILE", "LEAD_ID", "EMAIL", "Lead"),
)


# additional_fields: (link object name, path, id, name and state fields, closed states)
LINKED = {
    "opportunities": (
        "Opportunity",
        "Opportunities",
        "OPPORTUNITY_ID",
        "OPPORTUNITY_NAME",
        "OPPORTUNITY_STATE",
        {"WON", "LOST", "ABANDONED", "SUSPENDED"},
    ),
    "projects": (
        "Project",
        "Projects",
        "PROJECT_ID",
        "PROJECT_NAME",
        "STATUS",
        {"COMPLETED", "CANCELLED", "ABANDONED", "DEFERRED"},
    ),
}
MAX_LINKED = 20  # linked records read per contact and field


class InsightlyConnector(HttpConnector):
    crm = "insightly"
    additional_fields = {
        "opportunities": "a Contact's linked opportunities that are still open",
        "projects": "a Contact's linked projects not completed or cancelled",
    }
    options = {
        "additional_fields": Option(
            list,
            "additionalInfo to fetch for each match: opportunities, projects",
            [],
            choices=("opportunities", "projects"),
        ),
    }
    default_rate_limit = (
        10,
        1.0,
    )  # only a per-plan daily limit is documented: a conservative guess
    requests_per_query = 4  # Contacts PHONE and PHONE_MOBILE, Leads PHONE and MOBILE
    page_limit = 100  # Insightly's default ``top``; the maximum is 500
    # Four searches per query already; past 5 pages a number is a switchboard, not a person.
    max_pages = 5

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        base_url = self.connection.base_url or ""
        self._api = "" if base_url.rstrip("/").lower().endswith("/v3.1") else "v3.1/"
        basic = base64.b64encode(f"{self.secret}:".encode()).decode()
        self._headers = {"Authorization": f"Basic {basic}", "Accept": "application/json"}
        # The encoded key is a secret too: keep it out of the debug trace.
        self.trace.add_secret(basic)
        self._links: dict[Any, list[Mapping[str, Any]]] = {}  # per contact, this lookup

    def additional_info(self, name: str, match: Mapping[str, Any]) -> list[dict[str, Any]]:
        """``opportunities`` / ``projects`` of a Contact: ``GET /v3.1/Contacts/{id}/Links``
        (read once per contact and lookup), then ``GET /v3.1/Opportunities/{id}`` or
        ``/Projects/{id}`` per linked record (at most ``MAX_LINKED``; Insightly v3.1 has no
        batch read), closed ones left out. Leads link to none here: no request. Each
        ``{"const": str(id), "title": name, "id": id}``."""
        if name not in LINKED:
            return super().additional_info(name, match)
        if match.get("type") != "Contact":
            return []
        link_name, path, _id_key, name_key, state_key, closed = LINKED[name]
        links = self._links.get(match["id"])
        if links is None:
            body, resp = self.request_json(
                f"{self._api}Contacts/{match['id']}/Links", headers=self._headers
            )
            if not isinstance(body, list):
                raise CRMUnavailable(
                    "Insightly answered without links.", status_code=resp.status_code
                )
            links = self._links[match["id"]] = [lk for lk in body if isinstance(lk, Mapping)]
        ids = [lk.get("LINK_OBJECT_ID") for lk in links if lk.get("LINK_OBJECT_NAME") == link_name]
        out = []
        for linked_id in [i for i in ids if isinstance(i, int)][:MAX_LINKED]:
            item, _ = self.request_json(f"{self._api}{path}/{linked_id}", headers=self._headers)
            if isinstance(item, Mapping) and str(item.get(state_key) or "").upper() not in closed:
                out.append({"const": str(linked_id), "title": item.get(name_key), "id": linked_id})
        return out

    # Exact match: every format can find records no other format finds, so the base plan()
    # (every query) stands.

    def search(self, query: str) -> SearchPage:
        records: list[Mapping[str, Any]] = []
        state: RateLimitState | None = None
        for entity, field, id_field, email_field, kind in SEARCHES:
            for page in range(self.max_pages):
                # brief=true: only top-level fields, which hold all we read; the
                # sub-collections (custom fields, tags, links) only make the answer heavier.
                params = {
                    "field_name": field,
                    "field_value": query,
                    "brief": "true",
                    "top": self.page_limit,
                    "skip": page * self.page_limit,
                }
                body, resp = self.request_json(
                    f"{self._api}{entity}/Search", params=params, headers=self._headers
                )
                state = self.rate_limit_state(resp) or state
                if not isinstance(body, list):
                    raise CRMUnavailable(
                        "Insightly answered without a record list.", status_code=resp.status_code
                    )
                records.extend(_record(item, field, id_field, email_field, kind) for item in body)
                if len(body) < self.page_limit:
                    break
            else:
                self.complete = False  # more pages than max_pages: not an answer to cache
        return SearchPage(records, state)


def _record(item: Any, field: str, id_field: str, email_field: str, kind: str) -> Mapping[str, Any]:
    """A Contact or Lead in spec field names; ``phone`` is the field that matched."""
    if not isinstance(item, Mapping):
        raise CRMUnavailable("Insightly returned a record that is not an object.")
    name = " ".join(str(item[k]) for k in ("FIRST_NAME", "LAST_NAME") if item.get(k))
    return {
        "id": item.get(id_field),
        "name": name or None,
        "phone": item.get(field),
        PHONES: [item.get(f) for f in (field, *PHONE_FIELDS[kind])],
        "type": kind,
        "title": item.get("TITLE"),
        # A Contact names its organisation only by id; reading it would cost a request per
        # contact against a daily limit, so only Leads (which carry the name) have company.
        "company": item.get("ORGANISATION_NAME"),
        "email": item.get(email_field),
        "createdDate": item.get("DATE_CREATED_UTC"),
        "mostRecentActivityDate": item.get("LAST_ACTIVITY_DATE_UTC")
        or item.get("DATE_UPDATED_UTC"),
        "additionalInfo": None,
    }
