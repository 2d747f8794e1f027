"""Resolvers for several matches (docs/interface.md section 6), used by auto logging.

Each returns ``{"strategy", "contactId", "reason"}``; ``contactId`` is None where none is
chosen. The placeholder is never a candidate. Ties go to the earlier contact in the CRM's
order (``min``/``max`` over (key, position) keep that explicit).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from contact_lookup.model.contact import is_placeholder, return_message
from contact_lookup.model.dates import parse_date

STRATEGIES = ("earliest-created", "most-recent-activity", "first-alphabetical")

MISSING_CREATED_DATE_MESSAGE = (
    "Some matched contacts have no valid creation date, so the earliest-created rule could "
    "not choose one. Please contact the connector developer to add createdDate support."
)


def _dated(contacts: Sequence[dict[str, Any]], field: str) -> list[tuple[datetime, int]]:
    out = []
    for pos, contact in enumerate(contacts):
        when = parse_date(contact.get(field))
        if when is not None:
            out.append((when, pos))
    return out


def resolve(
    strategy: str, contacts: Sequence[dict[str, Any]]
) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """(resolution, warning returnMessage or None)."""
    if strategy not in STRATEGIES:
        raise ValueError(f"unknown resolve strategy {strategy!r}")
    real = [c for c in contacts if not is_placeholder(c)]

    def chosen(pos: int | None, reason: str) -> dict[str, Any]:
        return {
            "strategy": strategy,
            "contactId": None if pos is None else real[pos]["id"],
            "reason": reason,
        }

    if not real:
        return chosen(None, "no-match"), None
    if strategy == "earliest-created":
        dated = _dated(real, "createdDate")
        if len(dated) < len(real):  # all or nothing: one undated contact spoils the rule
            warning = return_message("warning", MISSING_CREATED_DATE_MESSAGE)
            return chosen(None, "missing-created-date"), warning
        return chosen(min(dated)[1], "earliest-created"), None
    if strategy == "most-recent-activity":
        dated = _dated(real, "mostRecentActivityDate")
        if not dated:
            return chosen(None, "no-activity-date"), None
        # newest date; among equals the earlier position (hence -pos in the max key)
        best = max(dated, key=lambda item: (item[0], -item[1]))
        return chosen(best[1], "most-recent-activity"), None
    named = [((c.get("name") or "").casefold(), pos) for pos, c in enumerate(real) if c.get("name")]
    if not named:
        return chosen(None, "no-name"), None
    return chosen(min(named)[1], "first-alphabetical"), None
