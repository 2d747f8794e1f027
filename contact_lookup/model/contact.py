"""The result model of findContact (docs/interface.md section 5) and the builders of each outcome.

Every result is a plain JSON-able dict, because it travels through Celery's JSON serialiser
and the Redis result backend unchanged.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from contact_lookup.model.dates import display_date
from contact_lookup.model.errors import ContactLookupError, CRMError, CRMUnavailable

FIELDS = (
    "id",
    "name",
    "phone",
    "type",
    "title",
    "company",
    "email",
    "createdDate",
    "mostRecentActivityDate",
    "additionalInfo",
)
DATE_FIELDS = ("createdDate", "mostRecentActivityDate")
PLACEHOLDER_ID = "createNewContact"


def placeholder() -> dict[str, Any]:
    """The spec's "Create new contact..." option: not a CRM record, so no createdDate."""
    return {
        "id": PLACEHOLDER_ID,
        "name": "Create new contact...",
        "additionalInfo": None,
        "isNewContact": True,
    }


def is_placeholder(contact: Mapping[str, Any]) -> bool:
    return bool(contact.get("isNewContact"))


def _text(value: object) -> str | None:
    if value is None:
        return None
    return value if isinstance(value, str) else str(value)


def from_record(record: Mapping[str, Any], query: str) -> dict[str, Any]:
    """One CRM record in the spec's contact shape: every field present, dates in ISO UTC.

    ``phone`` is the record's matched number where the connector gave one, else the query that
    found it. A record without an id is not a contact: the CRM answered garbage.
    """
    if not isinstance(record, Mapping) or record.get("id") in (None, ""):
        raise CRMUnavailable("The CRM returned a contact record without an id.")
    out: dict[str, Any] = {key: record.get(key) for key in FIELDS}
    out["id"] = _text(out["id"])
    for key in ("name", "type", "title", "company", "email"):
        out[key] = _text(out[key])
    out["phone"] = _text(record.get("phone")) or query
    for key in DATE_FIELDS:
        if out[key] is not None:
            out[key] = display_date(out[key])
    return out


def dedupe(contacts: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """Contacts found by several queries appear once, by (type, id), in first-found order.

    The type is part of the key because some CRMs number each record type separately
    (Bullhorn's ClientContact 5 and Candidate 5 are two people).
    """
    seen: set[tuple[Any, str]] = set()
    out = []
    for contact in contacts:
        key = (contact.get("type"), contact["id"])
        if key not in seen:
            seen.add(key)
            out.append(contact)
    return out


MESSAGE_TTL_MS = 5000  # how long App Connect shows a returnMessage (spec: "ttl", ms)


def return_message(message_type: str, message: str) -> dict[str, Any]:
    """The spec's ``returnMessage``: ``{messageType: success|warning|danger, message, ttl}``."""
    return {"messageType": message_type, "message": message, "ttl": MESSAGE_TTL_MS}


def failed_result(
    message: str, error_type: str, *, message_type: str = "danger", **tracking: Any
) -> dict[str, Any]:
    """A failed result in the spec's shape, for failures that are not a ContactLookupError
    (a job nobody answered, a job that ended in a Celery state other than SUCCESS)."""
    return {
        "successful": False,
        "matchedContactInfo": [],
        "returnMessage": return_message(message_type, message),
        "extraDataTracking": {**tracking, "errorType": error_type},
    }


def not_found_message(number: str) -> dict[str, Any]:
    return return_message("warning", f"Contact not found for {number}.")


def success(
    contacts: list[dict[str, Any]],
    number: str,
    *,
    tracking: Mapping[str, Any] | None = None,
    return_message: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """A completed lookup; with no real contact, the default not-found warning."""
    real = [c for c in contacts if not is_placeholder(c)]
    if return_message is None and not real:
        return_message = not_found_message(number)
    return {
        "successful": True,
        "matchedContactInfo": contacts,
        "returnMessage": dict(return_message) if return_message else None,
        "extraDataTracking": dict(tracking or {}),
    }


def failure(
    exc: ContactLookupError, *, tracking: Mapping[str, Any] | None = None, prefix: str = ""
) -> dict[str, Any]:
    """A failed lookup: never an empty success. Says what happened and what to do."""
    data = dict(tracking or {})
    if isinstance(exc, CRMError):
        if exc.status_code is not None:
            data["statusCode"] = exc.status_code
        if exc.rate_limit is not None:
            data.update(exc.rate_limit.tracking())
    message = (prefix + exc.user_message()).strip()
    return failed_result(message, type(exc).__name__, message_type=exc.message_type, **data)


def no_worker_answer(message: str) -> dict[str, Any]:
    """A failed result for a job nobody answered in time (no worker, expired, timed out)."""
    return failed_result(message, "WorkerTimeout", message_type="warning")
