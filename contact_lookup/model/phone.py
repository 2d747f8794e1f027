"""Phone numbers: normalise to E.164 and expand the user's overridingFormat into queries.

Exact-match CRMs find a contact only when the stored string equals the query, so the spec's
``overridingFormat`` lists the shapes users store numbers in. ``*`` and ``#`` are digit
placeholders filled, in order, with the national significant number:
``(***) ***-****`` + ``+14155550100`` -> ``(415) 555-0100``.
"""

from __future__ import annotations

import re

import phonenumbers

from contact_lookup.model.errors import InvalidPhoneNumber

PLACEHOLDERS = "*#"
_DIGITS = re.compile(r"\d+")
_EXTENSION = re.compile(r"\d{1,10}")
MAX_INPUT = 64  # longer than any real number; bounds the work done on hostile input


def to_e164(raw: object, region: str = "US") -> str:
    """The number in E.164 (``+14155550100``), or InvalidPhoneNumber.

    Accepts ``+14155550100``, ``14155550100`` (RingCentral call logs drop the ``+``),
    `` 14155550100`` (a ``+`` that URL decoding turned into a space) and national formats such
    as ``(415) 555-0100``, read in ``region``.
    """
    if not isinstance(raw, str) or not raw.strip():
        raise InvalidPhoneNumber(raw, "is empty or not a string")
    if len(raw) > MAX_INPUT:
        raise InvalidPhoneNumber(raw[:MAX_INPUT] + "...", "is too long to be a phone number")
    text = raw.strip()
    if raw[0] == " " and _DIGITS.fullmatch(text):
        text = "+" + text  # the '+' was decoded to a space on its way here
    candidates = [text]
    if _DIGITS.fullmatch(text):
        # Digits alone are ambiguous: national in the connection's region, or international
        # with the '+' dropped. Try the region first, as a user would read it.
        candidates.append("+" + text)
    for candidate in candidates:
        try:
            parsed = phonenumbers.parse(candidate, None if candidate[0] == "+" else region)
        except phonenumbers.NumberParseException:
            continue
        if phonenumbers.is_valid_number(parsed):
            return phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164)
    raise InvalidPhoneNumber(raw)


def extension(raw: object) -> str:
    """An internal extension number: its digits, unchanged, or InvalidPhoneNumber."""
    text = raw.strip() if isinstance(raw, str) else ""
    if not _EXTENSION.fullmatch(text):
        raise InvalidPhoneNumber(raw, "is not an extension number (1 to 10 digits)")
    return text


def national_digits(e164: str) -> str:
    """The national significant number of an E.164 number (``+14155550100`` -> ``4155550100``)."""
    return phonenumbers.national_significant_number(phonenumbers.parse(e164, None))


def split_formats(formats: str | None) -> list[str]:
    """The comma-separated format list, each trimmed, empties dropped."""
    return [f.strip() for f in (formats or "").split(",") if f.strip()]


def apply_format(fmt: str, digits: str) -> str | None:
    """Fill the format's placeholders with ``digits`` in order; None when the counts differ."""
    if sum(fmt.count(p) for p in PLACEHOLDERS) != len(digits):
        return None
    fill = iter(digits)
    return "".join(next(fill) if ch in PLACEHOLDERS else ch for ch in fmt)


def queries(e164: str, formats: str | None) -> list[str]:
    """The E.164 number, then each distinct formatted variant that applies, in order."""
    digits = national_digits(e164)
    out = [e164]
    for fmt in split_formats(formats):
        variant = apply_format(fmt, digits)
        if variant is not None and variant not in out:
            out.append(variant)
    return out
