"""``crm = "clio"``: Clio Manage API v4 contacts, ``query`` search verified on phone numbers.

Clio documents ``query`` as a wildcard search over name, address, e-mail, custom fields,
matter and company names (docs.developers.clio.com, Contacts; tests/contract/fixtures/SOURCES.md),
not a phone match: a contact with "102" in its street address comes back for ``102``. Every
contact is therefore asked for its ``phone_numbers{number}`` and kept only when one of them is
the looked-up number (``Connector.verify``). Clio has no extension field: extension lookups
are refused.

Config: ``base_url`` (e.g. ``https://app.clio.com``, or the EU/CA/AU host) and ``token_env``
naming the OAuth access token. One query is one ``GET /api/v4/contacts.json?query=N``, pages
followed through ``meta.paging.next`` up to ``max_pages``. Rate limit: Clio's
``X-RateLimit-*`` headers (Reset already in epoch seconds, the base class's default reading)
and 429 with ``Retry-After``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

from contact_lookup.connectors.base import PHONES, Option, SearchPage
from contact_lookup.connectors.http import HttpConnector
from contact_lookup.model.config import MAX_CONCURRENCY_CAP
from contact_lookup.model.errors import CRMUnavailable, RateLimitState

# Every field the spec's contact shape can use; Clio returns only what is asked for.
# ``phone_numbers{number}``: ``query`` is a wildcard over names, addresses, e-mails, custom
# fields, matter and company names (Clio API v4 docs, Contacts "query"), so a hit proves
# nothing; the stored numbers are what ``find`` verifies a match against.
FIELDS = (
    "id,name,type,title,company{name},primary_email_address,phone_numbers{number},"
    "created_at,updated_at"
)


class ClioConnector(HttpConnector):
    crm = "clio"
    additional_fields = {"matters": "the contact's open and pending matters (as client)"}
    options = {
        "additional_fields": Option(
            list, "additionalInfo to fetch for each match: matters", [], choices=("matters",)
        ),
    }
    default_rate_limit = (50, 60.0)  # about 50 requests/minute per token
    # Clio documents a per-token rate (50/min at peak, docs.developers.clio.com "Rate
    # Limits") and no concurrency limit: the base default. A lookup sends one search per
    # term (3 for E.164 and two formats), all at once.
    default_max_concurrency = MAX_CONCURRENCY_CAP
    page_limit = 200  # Clio's maximum page size
    # Each page is one request against ~50/min: past 5 x 200 matches for one number the
    # number is a switchboard, not a person, and the pop would be useless anyway.
    max_pages = 5

    # Wildcard match: each format can find records no other format finds, so the base
    # plan() (every query) stands.

    def search(self, query: str) -> SearchPage:
        headers = {"Authorization": f"Bearer {self.secret}", "Accept": "application/json"}
        path = "api/v4/contacts.json"
        params: dict[str, Any] | None = {
            "query": query,
            "fields": FIELDS,
            "limit": self.page_limit,
            "order": "id(asc)",
        }
        records: list[Mapping[str, Any]] = []
        state: RateLimitState | None = None
        for _ in range(self.max_pages):
            body, resp = self.request_json(path, params=params, headers=headers)
            state = self.rate_limit_state(resp) or state
            if not isinstance(body, Mapping) or not isinstance(body.get("data"), list):
                raise CRMUnavailable(
                    "Clio answered without a contact list.", status_code=resp.status_code
                )
            records.extend(_record(item) for item in body["data"])
            next_url = _next_link(body)
            if not next_url:
                break
            path, params = self._own_url(next_url), None  # the link carries every parameter
        else:
            self.complete = False  # more pages than max_pages: not an answer to cache
        return SearchPage(records, state)

    def additional_info(self, name: str, match: Mapping[str, Any]) -> list[dict[str, Any]]:
        """``matters``: ``GET /api/v4/matters.json?client_id=ID&status=open,pending``, one page
        of up to 200; each ``{"const": str(id), "title": "display_number description",
        "id": id}``.

        Sources: ``client_id`` is the filter RingCentral's App Connect Clio connector sends
        (ringcentral/rc-unified-crm-extension ``src/connectors/clio/index.ts`` @fa94f96,
        ``matters.json?client_id=...``); the status values ``open``, ``pending``, ``closed``
        are Clio's (docs.developers.clio.com/guides/clio-manage/matters/, "Matter Status",
        which also names the list filters). That ``status`` takes a comma-separated list
        (``open,pending``) is stated only by third-party schemas generated from Clio's API
        reference (e.g. the usefulapi Clio MCP ``clio_list_matters``): not confirmed on a
        Clio page we could read. App Connect filters closed matters client-side instead."""
        if name != "matters":
            return super().additional_info(name, match)
        body, resp = self.request_json(
            "api/v4/matters.json",
            params={
                "client_id": match["id"],
                "status": "open,pending",
                "fields": "id,display_number,description",
                "limit": self.page_limit,
            },
            headers={"Authorization": f"Bearer {self.secret}", "Accept": "application/json"},
        )
        data = body.get("data") if isinstance(body, Mapping) else None
        if not isinstance(data, list):
            raise CRMUnavailable(
                "Clio answered without a matter list.", status_code=resp.status_code
            )
        return [
            {
                "const": str(m.get("id")),
                "title": " ".join(str(m[k]) for k in ("display_number", "description") if m.get(k)),
                "id": m.get("id"),
            }
            for m in data
            if isinstance(m, Mapping) and m.get("id") is not None
        ]

    def _own_url(self, url: str) -> str:
        """The next-page link, only if it points at the configured host: the bearer token
        goes with it, so a link elsewhere is treated as a broken answer, not followed."""
        here, there = urlsplit(self.connection.base_url or ""), urlsplit(url)
        if (there.scheme, there.netloc) != (here.scheme, here.netloc):
            raise CRMUnavailable("Clio's next-page link points at another host.")
        return url


def _next_link(body: Mapping[str, Any]) -> str | None:
    meta = body.get("meta")
    paging = meta.get("paging") if isinstance(meta, Mapping) else None
    link = paging.get("next") if isinstance(paging, Mapping) else None
    return link if isinstance(link, str) and link else None


def _record(item: Any) -> Mapping[str, Any]:
    """A Clio contact in spec field names, with its stored ``phones``."""
    if not isinstance(item, Mapping):
        raise CRMUnavailable("Clio returned a contact that is not an object.")
    company = item.get("company")
    return {
        "id": item.get("id"),
        "name": item.get("name"),
        "type": item.get("type"),
        "title": item.get("title"),
        "company": company.get("name") if isinstance(company, Mapping) else None,
        "email": item.get("primary_email_address"),
        PHONES: [
            p.get("number") for p in item.get("phone_numbers") or [] if isinstance(p, Mapping)
        ],
        "createdDate": item.get("created_at"),
        "mostRecentActivityDate": item.get("updated_at"),
        "additionalInfo": None,
    }
