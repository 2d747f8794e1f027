"""``crm = "salesforce"``: Salesforce REST, one SOSL search over Contacts and Leads.

Connection: ``base_url`` is the org's instance URL (``https://yourorg.my.salesforce.com``);
``token_env`` names the variable holding an OAuth access token. Option ``api_version``
(default ``"59.0"``).

Search: ``GET /services/data/v{api_version}/search/?q=FIND {N} IN PHONE FIELDS RETURNING
Contact(...), Lead(...)`` with SOSL's reserved characters in ``N`` escaped. SOSL answers in one
response (up to 2,000 records): there is no paging to follow.

Matching and ``plan``: SOSL looks phone fields up through Salesforce's search index, which
ignores punctuation (Salesforce's own sample searches ``FIND {4155551212} IN Phone FIELDS`` to
find numbers it stores as ``(415) 555-1212``). Formatted variants of one number therefore find
the same records, and ``plan`` keeps only the first query of each phone key (its digits, less
a leading NANP ``1`` on 11 digits): one request where an exact-match CRM needs one per format.

Errors: 403 ``REQUEST_LIMIT_EXCEEDED`` (Salesforce's rate limit, never 429) ->
``RateLimited``: the concurrent variant waits ``CONCURRENT_WAIT_S``, the total (rolling
24-hour) variant holds every worker off ``TOTAL_WAIT_S`` and probes again; 401
``INVALID_SESSION_ID`` and other 403s
(``INSUFFICIENT_ACCESS``, ``API_DISABLED_FOR_ORG``) -> ``AuthRejected``; 400
(``MALFORMED_SEARCH``, ``INVALID_FIELD``) -> ``BadQuery``. Rate-limit state comes from
``Sforce-Limit-Info: api-usage=N/M``, sent on every response: remaining ``M - N`` of ``M``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any

import requests

from contact_lookup.connectors.base import PHONES, Option, SearchPage
from contact_lookup.connectors.http import HttpConnector
from contact_lookup.model.errors import (
    AuthRejected,
    BadQuery,
    ConfigError,
    CRMUnavailable,
    RateLimited,
    RateLimitState,
)

DEFAULT_API_VERSION = "59.0"
# REQUEST_LIMIT_EXCEEDED has two variants (REST API Developer Guide, "Status Codes and Error
# Responses"; Salesforce Developer Limits): "ConcurrentRequests (Concurrent API Requests)
# Limit exceeded." clears when long-running requests finish: a short hold; "TotalRequests
# Limit exceeded." is the rolling 24-hour allocation, with no reset named: an hourly probe.
CONCURRENT_WAIT_S = 5.0
TOTAL_WAIT_S = 3600.0
# The standard phone fields of each object (Object Reference: Contact, Lead), returned so
# that ``find`` can verify a hit: SOSL matches tokens, not whole numbers.
PHONE_FIELDS = {
    "Contact": ("Phone", "MobilePhone", "HomePhone", "OtherPhone", "AssistantPhone", "Fax"),
    "Lead": ("Phone", "MobilePhone", "Fax"),
}
RETURNING = (
    "Contact(Id,Name,Title,Email,Account.Name,CreatedDate,LastModifiedDate,"
    + ",".join(PHONE_FIELDS["Contact"])
    + "), Lead(Id,Name,Title,Company,Email,CreatedDate,LastModifiedDate,"
    + ",".join(PHONE_FIELDS["Lead"])
    + ")"
)
# SOSL reserved characters (SOQL and SOSL Reference, "FIND"): escaped with a backslash.
RESERVED = frozenset("?&|!{}[]()^~*:\\\"'+-")
# ``Sforce-Limit-Info: api-usage=25/5000; per-app-api-usage=17/250(appName=sample-app)``
# (REST API Developer Guide, "Limit Info Header"; the same value in simple-salesforce's
# tests/test_api.py): the org's usage, and the connected app's own where it has a limit.
_API_USAGE = re.compile(r"(?<![\w-])(per-app-)?api-usage=(\d+)/(\d+)")
_VERSION = re.compile(r"\d+\.\d")
_RECORD_ID = re.compile(r"[A-Za-z0-9]{15}(?:[A-Za-z0-9]{3})?")  # 15- or 18-character id


def escape_sosl(term: str) -> str:
    return "".join("\\" + ch if ch in RESERVED else ch for ch in term)


def sosl(number: str) -> str:
    """The SOSL search for one query, its term the digits Salesforce's phone index holds.

    Salesforce documents phone search by digits (SOQL and SOSL Reference, "FIND": ``FIND
    {4155551212} IN PHONE FIELDS`` finds ``(415) 555-1212``): the term is ``phone_key``, not
    the E.164 string, whose ``+`` is SOSL syntax.
    """
    term = phone_key(number) or number
    return f"FIND {{{escape_sosl(term)}}} IN PHONE FIELDS RETURNING {RETURNING}"


def phone_key(query: str) -> str:
    """What Salesforce's phone index compares: the digits, less a leading NANP 1 on 11."""
    digits = "".join(ch for ch in query if ch.isdigit())
    return digits[1:] if len(digits) == 11 and digits.startswith("1") else digits


def to_contact(item: Any) -> dict[str, Any]:
    """One search record in the spec's field names; dates stay as Salesforce wrote them."""
    if not isinstance(item, Mapping):
        raise CRMUnavailable("Salesforce returned a search record that is not an object.")
    attributes = item.get("attributes")
    sobject = attributes.get("type") if isinstance(attributes, Mapping) else None
    account = item.get("Account")
    company = (
        item.get("Company")
        if sobject == "Lead"
        else (account.get("Name") if isinstance(account, Mapping) else None)
    )
    phones = [item.get(f) for f in PHONE_FIELDS.get(str(sobject), ())]
    return {
        "id": item.get("Id"),
        "name": item.get("Name"),
        PHONES: phones,
        "type": sobject,
        "title": item.get("Title"),
        "company": company,
        "email": item.get("Email"),
        "createdDate": item.get("CreatedDate"),
        "mostRecentActivityDate": item.get("LastModifiedDate"),
    }


class SalesforceConnector(HttpConnector):
    crm = "salesforce"
    default_rate_limit = (25, 1.0)  # concurrent-request cap, about 25 long-running per org
    # "Concurrent API requests lasting 20 seconds or longer: 25" per production org
    # (developer.salesforce.com, "API Request Limits and Allocations"). One SOSL per lookup.
    default_max_concurrency = 25
    options = {
        "api_version": Option(
            (str, float),
            "REST API version, e.g. '59.0'",
            DEFAULT_API_VERSION,
            pattern=r"\d{2,3}\.\d",
        ),
        "additional_fields": Option(
            list,
            "additionalInfo to fetch for each match: opportunities",
            [],
            choices=("opportunities",),
        ),
    }

    additional_fields = {"opportunities": "a Contact's open opportunities (contact roles)"}

    def additional_info(self, name: str, match: Mapping[str, Any]) -> list[dict[str, Any]]:
        """``opportunities``: one SOQL ``GET .../query?q=SELECT Id, Name FROM Opportunity
        WHERE IsClosed = false AND Id IN (SELECT OpportunityId FROM OpportunityContactRole
        WHERE ContactId = 'ID') LIMIT 100`` (SOQL reference, "Semi-Join"); a Lead has none
        (opportunities exist only once it is converted), so no request is made for one. Each
        ``{"const": Id, "title": Name, "id": Id}``."""
        if name != "opportunities":
            return super().additional_info(name, match)
        if match.get("type") != "Contact":
            return []
        contact_id = str(match["id"])
        if not _RECORD_ID.fullmatch(contact_id):
            raise CRMUnavailable("Salesforce returned a Contact id that is not a record id.")
        # Safe: the id was just checked to be 15 or 18 letters and digits (a Salesforce id).
        soql = (
            "SELECT Id, Name FROM Opportunity WHERE IsClosed = false AND Id IN "  # noqa: S608
            "(SELECT OpportunityId FROM OpportunityContactRole WHERE ContactId = "
            f"'{contact_id}') LIMIT 100"
        )
        body, resp = self.request_json(
            f"/services/data/v{self._api_version()}/query/",
            params={"q": soql},
            headers={"Authorization": f"Bearer {self.secret}"},
        )
        records = body.get("records") if isinstance(body, Mapping) else None
        if not isinstance(records, list):
            raise CRMUnavailable(
                "Salesforce answered a query without records.", status_code=resp.status_code
            )
        return [
            {"const": str(r["Id"]), "title": r.get("Name"), "id": r["Id"]}
            for r in records
            if isinstance(r, Mapping) and r.get("Id")
        ]

    def plan(self, queries: list[str]) -> list[str]:
        kept: dict[str, str] = {}
        for query in queries:
            kept.setdefault(phone_key(query) or query, query)
        return list(kept.values())

    def search(self, query: str) -> SearchPage:
        body, resp = self.request_json(
            f"/services/data/v{self._api_version()}/search/",
            params={"q": sosl(query)},
            headers={"Authorization": f"Bearer {self.secret}"},
        )
        # Since API v37 the answer is {"searchRecords": [...]}; earlier versions sent the list.
        records = body.get("searchRecords") if isinstance(body, Mapping) else body
        if not isinstance(records, list):
            raise CRMUnavailable(
                "Salesforce answered a search without its searchRecords.",
                status_code=resp.status_code,
            )
        return SearchPage([to_contact(item) for item in records], self.rate_limit_state(resp))

    def rate_limit_state(self, resp: requests.Response) -> RateLimitState | None:
        """The tighter of the org's ``api-usage`` and the app's ``per-app-api-usage``
        (whichever leaves fewer requests), so the shared budget follows the one that will
        refuse first. A rolling 24-hour allocation: there is no reset instant to report."""
        usages = [
            (max(0, int(m[3]) - int(m[2])), int(m[3]))
            for m in _API_USAGE.finditer(resp.headers.get("Sforce-Limit-Info", ""))
        ]
        if not usages:
            return None
        remaining, allocation = min(usages)
        return RateLimitState(remaining=remaining, amount=allocation)

    def check(self, resp: requests.Response) -> None:
        code = resp.status_code
        if code < 300:
            return
        errors = _errors(resp)
        codes = [c for c, _ in errors]
        detail = f"{errors[0][0]}: {errors[0][1]}" if errors else f"HTTP {code}"
        if "REQUEST_LIMIT_EXCEEDED" in codes:
            concurrent = any("concurrent" in m.lower() for c, m in errors)
            raise RateLimited(
                f"Salesforce's API request limit is exceeded ({detail}).",
                retry_after_s=CONCURRENT_WAIT_S if concurrent else TOTAL_WAIT_S,
                status_code=code,
                rate_limit=self.rate_limit_state(resp),
            )
        if code in (401, 403):
            raise AuthRejected(f"Salesforce rejected the session ({detail}).", status_code=code)
        if code == 400:
            raise BadQuery(f"Salesforce refused the search ({detail}).", status_code=code)
        super().check(resp)

    def _api_version(self) -> str:
        value = self.connection.options.get("api_version", DEFAULT_API_VERSION)
        text = (
            f"{value:.1f}"
            if isinstance(value, int | float) and not isinstance(value, bool)
            else str(value)
        )
        if not _VERSION.fullmatch(text):
            raise ConfigError(
                f"connection {self.connection.name!r}: api_version must look like '59.0'"
            )
        return text


def _errors(resp: requests.Response) -> list[tuple[str, str]]:
    """Salesforce's error array ``[{message, errorCode}]`` as (code, message) pairs."""
    try:
        body = json.loads(resp.content)
    except (ValueError, UnicodeDecodeError):
        return []
    items = body if isinstance(body, list) else [body]
    return [
        (str(e.get("errorCode")), str(e.get("message", "")))
        for e in items
        if isinstance(e, Mapping) and e.get("errorCode")
    ]
