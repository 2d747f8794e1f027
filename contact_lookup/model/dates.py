"""Normalise the dates CRMs send for a contact (createdDate, mostRecentActivityDate).

Contract
--------
``parse_date(value)`` returns an aware UTC ``datetime`` or ``None``.
``normalise_date(value)`` returns that instant as ISO 8601 UTC ending in ``Z``
(``2024-01-01T00:00:00Z``), adding ``.mmm`` only when the milliseconds,
truncated, are non-zero (``2024-01-01T00:00:00.123Z``); otherwise ``None``.
``display_date(value)`` is ``normalise_date(value)`` for valid values and the
value itself, unchanged, for anything else.

None of them raises, whatever they are given.

Accepted
--------
* ISO 8601: ``YYYY-MM-DD``, or ``YYYY-MM-DD[T ]HH:MM[:SS[.fraction]]`` with an
  optional zone (``Z``, ``UTC``, ``GMT``, ``+HH``, ``+HHMM``, ``+HH:MM``); no zone
  means UTC.
* Compact ``YYYYMMDD`` and ``YYYYMMDDHHmmss`` strings.
* Unix timestamps as non-negative int/float or numeric string; the unit comes
  from the magnitude: < 1e11 seconds, < 1e14 milliseconds, < 1e17 microseconds,
  otherwise nanoseconds.
* Named-month dates (RFC 2822 / HTTP dates, ``January 1, 2024``,
  ``1 Jan 2024 10:30:00 +0530``), parsed by dateutil; no zone means UTC.
* .NET JSON dates ``/Date(1704067200000)/`` and ``/Date(1704067200000+0100)/``;
  the milliseconds are already UTC, so the offset is ignored.

Everything else is rejected: ambiguous slash dates, impossible calendar dates,
blank strings, bools, containers, trailing garbage, out-of-range instants.
"""

from __future__ import annotations

import math
import re
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from fractions import Fraction
from typing import Final

from dateutil import parser as dateutil_parser

__all__ = ["display_date", "normalise_date", "parse_date"]

_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)

# re.ASCII throughout: without it \d also matches non-ASCII digits ("٢٠٢٤"),
# which int() would happily accept.
_ISO_RE: Final = re.compile(
    r"""
    (?P<year>\d{4})-(?P<month>\d{2})-(?P<day>\d{2})
    (?:
        [T\ ](?P<hour>\d{2}):(?P<minute>\d{2})
        (?::(?P<second>\d{2})(?:[.,](?P<fraction>\d+))?)?
        (?:\ ?(?P<zone>Z|UTC|GMT|(?P<sign>[+-])(?P<off_h>\d{2})(?::?(?P<off_m>\d{2}))?))?
    )?
    """,
    re.VERBOSE | re.IGNORECASE | re.ASCII,
)

_COMPACT_RE: Final = re.compile(
    r"(?P<year>\d{4})(?P<month>\d{2})(?P<day>\d{2})"
    r"(?:(?P<hour>\d{2})(?P<minute>\d{2})(?P<second>\d{2}))?",
    re.ASCII,
)

# No sign, no exponent: "-5" and "1e9" are not timestamps anyone sends us.
_NUMERIC_RE: Final = re.compile(r"\d+(?:\.\d+)?", re.ASCII)

# The optional backslashes tolerate the "\/Date(...)\/" escaping some
# serialisers leave in. Negative millis do not match: .NET uses them mostly for
# DateTime.MinValue, a "no date" sentinel.
_DOTNET_RE: Final = re.compile(r"\\?/Date\((?P<millis>\d+)(?:[+-]\d{4})?\)\\?/", re.ASCII)

_WEEKDAY = (
    r"(?P<weekday>mon(?:day)?|tue(?:s(?:day)?)?|wed(?:nesday)?|thu(?:r(?:s(?:day)?)?)?"
    r"|fri(?:day)?|sat(?:urday)?|sun(?:day)?)\.?,?\s+"
)
_MONTH = (
    r"(?:jan(?:uary)?|feb(?:ruary)?|mar(?:ch)?|apr(?:il)?|may|june?|july?|aug(?:ust)?"
    r"|sep(?:t(?:ember)?)?|oct(?:ober)?|nov(?:ember)?|dec(?:ember)?)\.?"
)
_ORDINAL = r"(?:st|nd|rd|th)?"
_TIME_AND_ZONE = (
    r"(?:,?\s+\d{1,2}:\d{2}(?::\d{2}(?:\.\d+)?)?(?:\s*[ap]m)?"
    r"(?:\s+(?:gmt|utc|ut|z|[ecmp][sd]t|[+-]\d{2}:?\d{2}))?)?"
)
# This regex, not dateutil, decides which shapes are accepted: dateutil alone
# would fill a missing day from its default and guess the order of bare
# numbers. Both orders require a named month, a day and a four-digit year.
_NAMED_RE: Final = re.compile(
    rf"(?:{_WEEKDAY})?(?P<date>"
    rf"(?:(?P<day_first>\d{{1,2}}){_ORDINAL}\s+{_MONTH},?|{_MONTH}\s+(?P<day>\d{{1,2}}){_ORDINAL},?)"
    rf"\s+(?P<year>\d{{4}}){_TIME_AND_ZONE})",
    re.IGNORECASE | re.ASCII,
)
_WEEKDAY_INDEX: Final = {"mon": 0, "tue": 1, "wed": 2, "thu": 3, "fri": 4, "sat": 5, "sun": 6}
# dateutil silently ignores zone names it does not know (returning a naive
# time we would then read as UTC), so the RFC 822 names are spelled out.
_ZONE_NAMES: Final = {
    "UT": 0,
    "EST": -5 * 3600,
    "EDT": -4 * 3600,
    "CST": -6 * 3600,
    "CDT": -5 * 3600,
    "MST": -7 * 3600,
    "MDT": -6 * 3600,
    "PST": -8 * 3600,
    "PDT": -7 * 3600,
}

# (exclusive upper bound, unit as a power of ten below one second): a value
# under 1e11 is seconds, under 1e14 milliseconds, under 1e17 microseconds.
_UNIT_LIMITS: Final = ((10**11, 0), (10**14, 3), (10**17, 6))


def parse_date(value: object) -> datetime | None:
    """Return ``value`` as an aware UTC datetime, or None when it is not a valid date."""
    try:
        if isinstance(value, bool):  # bool is an int subclass, but never a date
            return None
        if isinstance(value, int):
            return _from_timestamp(Fraction(value))
        if isinstance(value, float):
            if not math.isfinite(value):
                return None
            # repr gives the shortest decimal that round-trips, so 1704067200.123
            # stays .123 rather than the binary .12299990654...
            return _from_timestamp(Fraction(Decimal(repr(value))))
        if isinstance(value, str):
            return _parse_string(value.strip())
    except (ValueError, OverflowError, OSError, TypeError, ArithmeticError):
        return None
    return None


def normalise_date(value: object) -> str | None:
    """Return ``value`` as ISO 8601 UTC ending in 'Z', or None when it is not a valid date."""
    parsed = parse_date(value)
    if parsed is None:
        return None
    stamp = (
        f"{parsed.year:04d}-{parsed.month:02d}-{parsed.day:02d}"
        f"T{parsed.hour:02d}:{parsed.minute:02d}:{parsed.second:02d}"
    )
    millis = parsed.microsecond // 1000
    # Decided on the truncated value, so the output always re-parses to itself.
    return f"{stamp}.{millis:03d}Z" if millis else f"{stamp}Z"


def display_date(value: object) -> object:
    """Return ``normalise_date(value)`` when valid, else ``value`` itself, unchanged."""
    normalised = normalise_date(value)
    return value if normalised is None else normalised


def _parse_string(text: str) -> datetime | None:
    if match := _ISO_RE.fullmatch(text):
        return _from_iso(match)
    if match := _DOTNET_RE.fullmatch(text):
        return _EPOCH + timedelta(milliseconds=int(match["millis"]))
    if "/" in text:  # 01/02/2024 is January or February depending on who wrote it
        return None
    # Every 8/14-digit string is a compact date, never a timestamp: as seconds
    # they would fall in 1970-73 and as milliseconds after 2286, so
    # "20240230" is an impossible date, not a 1970 timestamp.
    if match := _COMPACT_RE.fullmatch(text):
        return _from_fields(match, zone=UTC)
    if _NUMERIC_RE.fullmatch(text):
        return _from_timestamp(Fraction(text))
    if match := _NAMED_RE.fullmatch(text):
        return _from_named(match)
    return None


def _from_iso(match: re.Match[str]) -> datetime | None:
    zone = UTC
    if match["sign"]:
        hours, minutes = int(match["off_h"]), int(match["off_m"] or 0)
        if hours > 23 or minutes > 59:
            return None
        offset = timedelta(hours=hours, minutes=minutes)
        zone = timezone(-offset if match["sign"] == "-" else offset)
    # Sub-microsecond digits are truncated, matching the output's truncation.
    micro = int((match["fraction"] or "").ljust(6, "0")[:6])
    return _from_fields(match, zone=zone, microsecond=micro)


def _from_fields(match: re.Match[str], zone: timezone, microsecond: int = 0) -> datetime:
    local = datetime(
        int(match["year"]),
        int(match["month"]),
        int(match["day"]),
        int(match["hour"] or 0),
        int(match["minute"] or 0),
        int(match["second"] or 0),
        microsecond,
        tzinfo=zone,
    )
    return local.astimezone(UTC)


def _from_timestamp(number: Fraction) -> datetime | None:
    if number < 0:
        return None
    digits = 9  # nanoseconds unless a smaller magnitude says otherwise
    for limit, unit_digits in _UNIT_LIMITS:
        if number < limit:
            digits = unit_digits
            break
    # Exact rational arithmetic then floor: truncates like the ISO fraction does.
    microseconds = math.floor(number * 10**6 / 10**digits)
    return _EPOCH + timedelta(microseconds=microseconds)


def _from_named(match: re.Match[str]) -> datetime | None:
    parsed = dateutil_parser.parse(match["date"], default=datetime(1970, 1, 1), tzinfos=_ZONE_NAMES)
    # dateutil reads some years as two-digit ("0000" becomes 2000); the regex
    # captured the real ones, so disagreement means dateutil guessed.
    day = int(match["day_first"] or match["day"])
    if parsed.year != int(match["year"]) or parsed.day != day:
        return None
    # A weekday that contradicts the date makes the whole value suspect.
    weekday = match["weekday"]
    if weekday and _WEEKDAY_INDEX[weekday[:3].lower()] != parsed.weekday():
        return None
    if parsed.tzinfo is None:
        return parsed.replace(tzinfo=UTC)
    return parsed.astimezone(UTC)
