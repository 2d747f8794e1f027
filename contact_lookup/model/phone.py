"""Phone numbers: normalise to E.164 and expand the user's overridingFormat into queries.

Exact-match CRMs find a contact only when the stored string equals the query, so the spec's
``overridingFormat`` lists the shapes users store numbers in. ``*`` and ``#`` are digit
placeholders filled, in order, with the national significant number:
``(***) ***-****`` + ``+14155550100`` -> ``(415) 555-0100``.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence

import phonenumbers

from contact_lookup.model.errors import InvalidPhoneNumber

PLACEHOLDERS = "*#"
_DIGITS = re.compile(r"\d+")
_EXTENSION = re.compile(r"\d{1,10}")
# What a number the caller typed can hold besides digits (no letters: phonenumbers reads
# "ext" or vanity letters as keypad digits, which is fine for valid numbers only).
_PUNCTUATED = re.compile(r"\+?[\d\s().\-/]+")
MAX_INPUT = 64  # longer than any real number; bounds the work done on hostile input


def to_e164(raw: object, region: str = "US") -> str:
    """The number in E.164 (``+14155550100``), or InvalidPhoneNumber.

    Accepts ``+14155550100``, ``14155550100`` (RingCentral drops the ``+``), `` 14155550100``
    (a ``+`` that URL decoding turned into a space) and national formats such as
    ``(415) 555-0100``, read in ``region``.

    The rules, in order (README "The result"):

    - Bare digits are RingCentral's E.164 with the ``+`` dropped, in every region: they are
      read as ``+DIGITS`` first, and in ``region`` only when that is not a valid number
      (``4155550100`` in the US). Reading the region first turned an international number
      into a wrong national one outside the US.
    - A valid number (``phonenumbers.is_valid_number``) is returned in E.164.
    - A ``+`` number that is not "valid" by the library's metadata but could still be a number
      (``could_be_e164``) is returned as the caller gave it, digits only: the findContact
      spec says the input is "usually E.164", and App Connect queries what it is given.
      Mexico's mobiles still arrive as ``+521...`` years after the 2019 dialling reform.
    - Anything else (too short, unknown country code, letters) raises InvalidPhoneNumber.
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
        # Digits alone: international with the '+' dropped first (README), then national.
        candidates = ["+" + text, text]
    parsed_ok: list[phonenumbers.PhoneNumber] = []
    for candidate in candidates:
        try:
            parsed = phonenumbers.parse(candidate, None if candidate[0] == "+" else region)
        except phonenumbers.NumberParseException:
            continue
        if phonenumbers.is_valid_number(parsed):
            return phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164)
        if candidate[0] == "+":
            parsed_ok.append(parsed)
    for parsed in parsed_ok if _PUNCTUATED.fullmatch(text) else ():
        if could_be_e164(parsed):
            return phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164)
    raise InvalidPhoneNumber(raw)


# Reasons from phonenumbers.is_possible_number_with_reason that still allow a real number
# the library's metadata does not know yet (TOO_LONG: Mexico's "+52 1" mobiles).
_POSSIBLE = {
    phonenumbers.ValidationResult.IS_POSSIBLE,
    phonenumbers.ValidationResult.IS_POSSIBLE_LOCAL_ONLY,
    phonenumbers.ValidationResult.TOO_LONG,
}
E164_MAX_DIGITS = 15  # ITU-T E.164, section 6.1: country code + national number


def could_be_e164(parsed: phonenumbers.PhoneNumber) -> bool:
    """Whether an international number the metadata calls invalid can still be searched.

    True when its country code is assigned (``region_code_for_country_code`` is not ``ZZ``),
    it has at most 15 digits (ITU-T E.164), and it is not too short for its country.
    """
    code = parsed.country_code
    if code is None or phonenumbers.region_code_for_country_code(code) == "ZZ":
        return False
    digits = len(str(code)) + len(phonenumbers.national_significant_number(parsed))
    if digits > E164_MAX_DIGITS:
        return False
    reason = phonenumbers.is_possible_number_with_reason(parsed)
    if reason == phonenumbers.ValidationResult.TOO_LONG:
        # One digit over the longest length the country uses: a legacy mobile prefix such
        # as Mexico's "1" (retired in 2019, still sent by carriers). More is a typo.
        region = phonenumbers.region_code_for_country_code(code)
        meta = phonenumbers.PhoneMetadata.metadata_for_region_or_calling_code(code, region)
        lengths = meta.general_desc.possible_length if meta and meta.general_desc else ()
        longest = max(lengths or (0,))
        return len(phonenumbers.national_significant_number(parsed)) <= longest + 1
    return reason in _POSSIBLE


def stored_forms(value: str, region: str) -> set[str]:
    """The E.164 numbers a phone value stored in a CRM can mean, read in ``region``.

    ``+1 415-555-0132`` -> ``{"+14155550132"}``; ``(415) 555-0132`` in the US -> the same;
    bare digits by the same rule as ``to_e164`` (``+DIGITS``, then national). A value that
    does not parse (``"call reception"``, ``"102"``) has none. An extension written after the
    number (``x12``) is not part of it.
    """
    text = value.strip() if isinstance(value, str) else ""
    if not text or len(text) > MAX_INPUT:
        return set()
    candidates = ["+" + text, text] if _DIGITS.fullmatch(text) else [text]
    out = set()
    for candidate in candidates:
        try:
            parsed = phonenumbers.parse(candidate, None if candidate[0] == "+" else region)
        except phonenumbers.NumberParseException:
            continue
        out.add(phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164))
    return out


def matching_value(
    values: Iterable[object], number: str, region: str, terms: Sequence[str]
) -> str | None:
    """The first stored phone value that is the looked-up number, or None.

    A value matches when it equals one of the ``terms`` queried (the E.164 number and each
    formatted variant) exactly, or when, read in the connection's ``region``, it is the
    E.164 ``number`` (``stored_forms``). Containing the number's digits is not enough:
    ``+442079460958`` contains ``2079460958`` but is another subscriber than
    ``+12079460958``.
    """
    exact = set(terms)
    strings = [v for v in values if isinstance(v, str)]
    for value in strings:
        if value in exact or value.strip() in exact:
            return value
    for value in strings:
        if number in stored_forms(value, region):
            return value
    return None


def matching_extension(values: Iterable[object], ext: str) -> str | None:
    """The first stored extension value equal to ``ext`` (digits, surrounding blanks ignored)."""
    for value in values:
        if (
            isinstance(value, str | int)
            and not isinstance(value, bool)
            and str(value).strip() == ext
        ):
            return str(value)
    return None


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
