"""Salesforce REST simulator: SOSL ``FIND ... IN PHONE FIELDS``, Bearer auth, API usage limit.

The vendor contract reproduced here (Salesforce REST API Developer Guide: "Search",
"Limit Info Header", "Status Codes and Error Responses"; SOQL and SOSL Reference: "FIND",
"IN SearchGroup", reserved characters; Salesforce's own sample searches
``FIND {4155551212} IN Phone FIELDS``, SOAP API guide "Sample search Call"):

* ``GET /services/data/vNN.N/search/?q=FIND {term} IN PHONE FIELDS RETURNING
  Contact(Id,Name,...), Lead(...) [LIMIT n]`` with ``Authorization: Bearer T``. Answer
  ``{"searchRecords": [{"attributes": {"type", "url"}, <fields>}]}``, grouped by object in
  RETURNING order, at most 2,000 records, no paging. ``Account.Name`` on a Contact comes back
  as a nested ``Account`` object.
* SOSL reserved characters ``? & | ! { } [ ] ( ) ^ ~ * : \\ " ' + -`` must be escaped with a
  backslash; an unescaped one (other than the ``*``/``?`` wildcards) is 400
  ``MALFORMED_SEARCH``, as is a term shorter than two characters. A field an object lacks is 400
  ``INVALID_FIELD``.
* Phone matching, the simulator's rule (Salesforce does not document its phone index): the
  term and each phone field are reduced to their digits, and an 11-digit string starting with
  the NANP country code 1 drops it; they match when the results are equal, or when one (of
  at least 7 digits) is the tail of the other: a number is found with or without its country
  or trunk code, so ``2079460958`` also finds ``+44 20 7946 0958`` (a different subscriber). So
  ``+14155550100``, ``14155550100``, ``4155550100`` and ``(415) 555-0100`` all find
  ``(415) 555-0100`` (how Salesforce formats a 10-digit US number typed without punctuation),
  while ``020 7946 0958`` and ``+44 20 7946 0958`` stay different (trunk prefix vs country
  code). ``IN ALL FIELDS`` also matches the name and email, case-insensitively.
* Dates: ``CreatedDate``/``LastModifiedDate`` like ``2013-05-20T20:49:32.000+0000``.
* 401 ``[{"message": "Session expired or invalid", "errorCode": "INVALID_SESSION_ID"}]``.
* API limit: a rolling 24-hour allocation (default 100,000 requests). Every response carries
  ``Sforce-Limit-Info: api-usage=N/M``; past the allocation the answer is 403 (not 429)
  ``[{"message": "TotalRequests Limit exceeded.", "errorCode": "REQUEST_LIMIT_EXCEEDED"}]``.
  ``set_rate_limit((M, seconds))`` replaces the allocation, e.g. a small one for a test.

Seed records with ``type`` ``Lead`` become Leads (phones -> ``Phone``, ``MobilePhone``;
``company`` -> ``Company``), others Contacts (phones -> ``Phone``, ``MobilePhone``,
``HomePhone``, ``OtherPhone``; ``company`` -> ``Account.Name``). ``title`` -> ``Title``;
``createdDate`` -> ``CreatedDate``; ``mostRecentActivityDate`` -> ``LastModifiedDate`` (null when
the seed has none). Ids are kept as they are.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, ClassVar

from crmsim.base import SimRequest, SimResponse, Simulator, WindowState, phones_of, seed_date

DAILY_ALLOCATION = 100_000
MAX_RECORDS = 2_000
RESERVED = set("?&|!{}[]()^~*:\\\"'+-")
WILDCARDS = set("*?")
PHONE_FIELDS = {  # Object Reference for Salesforce: the standard phone fields
    "Contact": ("Phone", "MobilePhone", "HomePhone", "OtherPhone", "AssistantPhone", "Fax"),
    "Lead": ("Phone", "MobilePhone", "Fax"),
}
# The shortest digit string matched as the tail of a stored number (a local number).
MIN_TAIL = 7
FIELDS = {
    "Contact": {
        "Id",
        "Name",
        "FirstName",
        "LastName",
        "Title",
        "Email",
        "Account.Name",
        "AccountId",
        "CreatedDate",
        "LastModifiedDate",
        *PHONE_FIELDS["Contact"],
    },
    "Lead": {
        "Id",
        "Name",
        "FirstName",
        "LastName",
        "Title",
        "Email",
        "Company",
        "CreatedDate",
        "LastModifiedDate",
        *PHONE_FIELDS["Lead"],
    },
}
_PATH = re.compile(r"/services/data/v(?P<version>\d+\.\d)/search/?")
_QUERY_PATH = re.compile(r"/services/data/v(?P<version>\d+\.\d)/query/?")
# The one SOQL query the connector sends (SOQL reference, "Semi-Join"): a contact's open
# opportunities through OpportunityContactRole.
_OPEN_OPPORTUNITIES = re.compile(
    r"SELECT Id, Name FROM Opportunity WHERE IsClosed = false AND Id IN "
    r"\(SELECT OpportunityId FROM OpportunityContactRole WHERE ContactId = '(?P<id>[^'\\]+)'\)"
    r"(?: LIMIT (?P<limit>\d+))?"
)
_SOSL = re.compile(
    r"\s*FIND\s+\{(?P<term>(?:\\.|[^\\{}])*)\}"
    r"(?:\s+IN\s+(?P<group>ALL|PHONE|NAME|EMAIL)\s+FIELDS)?"
    r"\s+RETURNING\s+(?P<returning>.+?)"
    r"(?:\s+LIMIT\s+(?P<limit>\d+))?\s*",
    re.IGNORECASE | re.DOTALL,
)
_OBJECT = re.compile(r"\s*(?P<name>\w+)\s*(?:\((?P<fields>[^()]*)\))?\s*")


def sf_datetime(value: object) -> str | None:
    """A seed date as Salesforce writes it: ``2013-05-20T20:49:32.000+0000``."""
    when = seed_date(value)
    if when is None:
        return None
    return when.strftime("%Y-%m-%dT%H:%M:%S.") + f"{when.microsecond // 1000:03d}+0000"


def phone_key(text: str) -> str:
    """The simulator's phone-index key: the digits, less a leading NANP 1 on 11 digits."""
    digits = "".join(ch for ch in text if ch.isdigit())
    return digits[1:] if len(digits) == 11 and digits.startswith("1") else digits


def _phone_hit(stored: str, key: str) -> bool:
    """The simulator's phone-index match: equal keys, or one key the tail of the other.

    Salesforce's search index matches a number with or without its country or trunk code,
    so ``2079460958`` finds ``+44 20 7946 0958`` too: a hit is a candidate, never proof
    that the record holds the caller's number (the connector must verify it).
    """
    other = phone_key(stored)
    if other == key:
        return True
    short, long_ = sorted((other, key), key=len)
    return len(short) >= MIN_TAIL and long_.endswith(short)


def to_record(seed: Mapping[str, Any], index: int) -> dict[str, Any]:
    sobject = "Lead" if seed.get("type") == "Lead" else "Contact"
    name = str(seed.get("name") or "")
    first, _, last = name.partition(" ")
    record: dict[str, Any] = {
        "sobject": sobject,
        "Id": str(seed.get("id", index + 1)),
        "Name": name,
        "FirstName": first or None,
        "LastName": last or first,
        "Title": seed.get("title"),
        "Email": seed.get("email"),
        "CreatedDate": sf_datetime(seed.get("createdDate")),
        "LastModifiedDate": sf_datetime(seed.get("mostRecentActivityDate")),
    }
    phones = phones_of(seed)
    for i, field_name in enumerate(PHONE_FIELDS[sobject]):
        record[field_name] = phones[i] if i < len(phones) else None
    company = seed.get("company")
    if sobject == "Lead":
        record["Company"] = company
    else:
        record["AccountId"] = f"001SIM{index:012d}" if company else None
        record["Account.Name"] = company
    return record


def _sf_error(status: int, code: str, message: str) -> SimResponse:
    return SimResponse(status, [{"message": message, "errorCode": code}])


class SoslError(ValueError):
    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


def unescape_term(raw: str) -> str:
    """The FIND term with escapes resolved; SoslError for an unescaped reserved character."""
    out, i = [], 0
    while i < len(raw):
        ch = raw[i]
        if ch == "\\" and i + 1 < len(raw):
            out.append(raw[i + 1])
            i += 2
            continue
        if ch in RESERVED and ch not in WILDCARDS:
            raise SoslError(
                "MALFORMED_SEARCH", f"line 1:{i + 6} no viable alternative at character '{ch}'"
            )
        out.append(ch)
        i += 1
    term = "".join(out).strip()
    if len(term) < 2:
        raise SoslError(
            "MALFORMED_SEARCH", "search term must be longer than one character: " + term
        )
    return term


def parse_returning(text: str) -> list[tuple[str, list[str]]]:
    """``Contact(Id,Name), Lead(Id)`` -> [("Contact", ["Id", "Name"]), ("Lead", ["Id"])]."""
    out = []
    for part in re.split(r",(?![^()]*\))", text):
        m = _OBJECT.fullmatch(part)
        if not m:
            raise SoslError("MALFORMED_SEARCH", f"unexpected token in RETURNING: {part.strip()}")
        name = m["name"]
        if name not in FIELDS:
            raise SoslError("INVALID_TYPE", f"sObject type '{name}' is not supported.")
        fields = [f.strip() for f in (m["fields"] or "Id").split(",") if f.strip()]
        for f in fields:
            if f not in FIELDS[name]:
                raise SoslError("INVALID_FIELD", f"No such column '{f}' on entity '{name}'.")
        out.append((name, fields))
    return out


class SalesforceSimulator(Simulator):
    name = "salesforce"
    # Always on, so that Sforce-Limit-Info is on every response as Salesforce sends it.
    default_rate_limit: ClassVar[tuple[int, float] | None] = (DAILY_ALLOCATION, 86_400.0)

    def __init__(
        self, contacts: str | Path | Iterable[Mapping[str, Any]] = (), **kwargs: Any
    ) -> None:
        super().__init__(contacts, **kwargs)
        self.records = [to_record(seed, i) for i, seed in enumerate(self.contacts)]
        # Contact id -> its opportunities (seed "opportunities": [{id, title, status}]).
        self.opportunities = {
            record["Id"]: list(seed.get("opportunities") or [])
            for seed, record in zip(self.contacts, self.records, strict=True)
        }

    def route(self, req: SimRequest) -> SimResponse:
        if req.header("Authorization") != f"Bearer {self.token}":
            return _sf_error(401, "INVALID_SESSION_ID", "Session expired or invalid")
        q = _QUERY_PATH.fullmatch(req.path)
        if q and req.method == "GET":
            return self._query(req, q["version"])
        m = _PATH.fullmatch(req.path)
        if not m or req.method != "GET":
            return _sf_error(404, "NOT_FOUND", "The requested resource does not exist")
        try:
            return self._search(req, m["version"])
        except SoslError as exc:
            return _sf_error(400, exc.code, str(exc))

    def _query(self, req: SimRequest, version: str) -> SimResponse:
        m = _OPEN_OPPORTUNITIES.fullmatch((req.arg("q") or "").strip())
        if not m:
            return _sf_error(
                400, "MALFORMED_QUERY", "only the open-opportunities query is simulated"
            )
        found = [
            {
                "attributes": {
                    "type": "Opportunity",
                    "url": f"/services/data/v{version}/sobjects/Opportunity/{o['id']}",
                },
                "Id": o["id"],
                "Name": o.get("title"),
            }
            for o in self.opportunities.get(m["id"], [])
            if o.get("status", "open") == "open"
        ][: int(m["limit"] or 2000)]
        return SimResponse(200, {"totalSize": len(found), "done": True, "records": found})

    def rate_limit_headers(self, state: WindowState) -> dict[str, str]:
        used = state.limit - state.remaining
        return {"Sforce-Limit-Info": f"api-usage={used}/{state.limit}"}

    def rate_limit_response(self, state: WindowState) -> SimResponse:
        # A window of a day or more is the org's total allocation; a short one stands for
        # the concurrent-request cap (the two published REQUEST_LIMIT_EXCEEDED messages).
        if state.window_s >= 86_400:
            return _sf_error(403, "REQUEST_LIMIT_EXCEEDED", "TotalRequests Limit exceeded.")
        return _sf_error(
            403,
            "REQUEST_LIMIT_EXCEEDED",
            "ConcurrentRequests (Concurrent API Requests) Limit exceeded.",
        )

    def _search(self, req: SimRequest, version: str) -> SimResponse:
        m = _SOSL.fullmatch(req.arg("q") or "")
        if not m:
            raise SoslError(
                "MALFORMED_SEARCH",
                "unexpected token: the search must look like "
                "FIND {term} IN ... FIELDS RETURNING ...",
            )
        term = unescape_term(m["term"])
        group = (m["group"] or "ALL").upper()
        returning = parse_returning(m["returning"])
        limit = min(MAX_RECORDS, int(m["limit"] or MAX_RECORDS))
        self.record_query(term)
        found: list[dict[str, Any]] = []
        for sobject, fields in returning:
            for record in self.records:
                if record["sobject"] == sobject and self._matches(record, term, group):
                    found.append(self._present(record, fields, version))
        return SimResponse(200, {"searchRecords": found[:limit]})

    @staticmethod
    def _matches(record: Mapping[str, Any], term: str, group: str) -> bool:
        key = phone_key(term)
        phones = [record.get(f) for f in PHONE_FIELDS[record["sobject"]]]
        if group in ("ALL", "PHONE") and key and any(p and _phone_hit(p, key) for p in phones):
            return True
        texts = {
            "NAME": [record.get("Name")],
            "EMAIL": [record.get("Email")],
            "ALL": [record.get("Name"), record.get("Email")],
        }.get(group, [])
        return any(t and term.lower() in str(t).lower() for t in texts)

    @staticmethod
    def _present(record: Mapping[str, Any], fields: list[str], version: str) -> dict[str, Any]:
        sobject, rid = record["sobject"], record["Id"]
        out: dict[str, Any] = {
            "attributes": {
                "type": sobject,
                "url": f"/services/data/v{version}/sobjects/{sobject}/{rid}",
            }
        }
        for name in fields:
            if name == "Account.Name":
                account_id = record.get("AccountId")
                out["Account"] = (
                    None
                    if account_id is None
                    else {
                        "attributes": {
                            "type": "Account",
                            "url": f"/services/data/v{version}/sobjects/Account/{account_id}",
                        },
                        "Name": record.get("Account.Name"),
                    }
                )
            else:
                out[name] = record.get(name)
        return out


SIMULATOR = SalesforceSimulator
