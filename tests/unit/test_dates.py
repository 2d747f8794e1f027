"""Tests for contact_lookup.model.dates.

Expected values are worked out independently of the code under test (by hand,
or with `date -u -d @N`): 1704067200 is 2024-01-01T00:00:00Z, 100000000 is
1973-03-03T09:46:40Z, 99999999999 is 5138-11-16T09:46:39Z, 253402300799 is
9999-12-31T23:59:59Z.
"""

from __future__ import annotations

import math
import re
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from contact_lookup.model.dates import display_date, normalise_date, parse_date

NEW_YEAR_2024 = "2024-01-01T00:00:00Z"
OUTPUT_SHAPE = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{3})?Z")

ISO_CASES = [
    ("2024-01-01", NEW_YEAR_2024),
    ("2024-02-29", "2024-02-29T00:00:00Z"),
    ("2024-01-01T00:00:00Z", NEW_YEAR_2024),
    ("2024-01-01T00:00:00", NEW_YEAR_2024),
    ("2024-01-01T10:30", "2024-01-01T10:30:00Z"),
    ("2024-01-01t00:00:00z", NEW_YEAR_2024),
    ("2024-01-01T00:00:00.000Z", NEW_YEAR_2024),
    ("2024-01-01T00:00:00.123Z", "2024-01-01T00:00:00.123Z"),
    ("2024-01-01T00:00:00.123456Z", "2024-01-01T00:00:00.123Z"),
    ("2024-01-01T00:00:00.999999999Z", "2024-01-01T00:00:00.999Z"),
    ("2024-01-01T00:00:00.5Z", "2024-01-01T00:00:00.500Z"),
    ("2024-01-01T00:00:00,25Z", "2024-01-01T00:00:00.250Z"),
    # Non-zero sub-second part that truncates to zero milliseconds.
    ("2024-01-01T00:00:00.0009Z", NEW_YEAR_2024),
    ("2013-05-20T20:49:32.000+0000", "2013-05-20T20:49:32Z"),
    ("2024-01-01T00:00:00+00:00", NEW_YEAR_2024),
    ("2024-01-01T00:00:00-00:00", NEW_YEAR_2024),
    ("2024-01-01T00:00:00 UTC", NEW_YEAR_2024),
    ("2016-03-28 13:11:50", "2016-03-28T13:11:50Z"),
    ("2016-03-28 13:11:50.25", "2016-03-28T13:11:50.250Z"),
    ("2016-03-28 13:11:50+02:00", "2016-03-28T11:11:50Z"),
    ("2016-03-28 13:11:50 +0200", "2016-03-28T11:11:50Z"),
    ("2016-03-28 13:11:50Z", "2016-03-28T13:11:50Z"),
    ("2024-01-01 00:00:00 UTC", NEW_YEAR_2024),
    ("  2024-01-01T00:00:00Z \n", NEW_YEAR_2024),
    ("0001-01-01T00:00:00Z", "0001-01-01T00:00:00Z"),
    ("9999-12-31T23:59:59.999Z", "9999-12-31T23:59:59.999Z"),
]

OFFSET_CASES = [
    ("2024-01-01T05:00:00+05:00", NEW_YEAR_2024),
    ("2024-01-01T05:30:00+0530", NEW_YEAR_2024),
    ("2024-01-01T05:30:00+05:30", NEW_YEAR_2024),
    ("2023-12-31T19:00:00-05:00", NEW_YEAR_2024),
    ("2023-12-31T19:00:00-0500", NEW_YEAR_2024),
    ("2024-01-01T00:00:00+01", "2023-12-31T23:00:00Z"),
    ("2024-03-01T00:30:00+01:00", "2024-02-29T23:30:00Z"),
    ("2023-03-01T00:30:00+01:00", "2023-02-28T23:30:00Z"),
    ("2024-01-01T00:00:00.123+05:45", "2023-12-31T18:15:00.123Z"),
    ("2024-12-31T20:00:00-04:00", "2025-01-01T00:00:00Z"),
]

COMPACT_CASES = [
    ("20240101", NEW_YEAR_2024),
    ("20240229", "2024-02-29T00:00:00Z"),
    ("20240101123456", "2024-01-01T12:34:56Z"),
    ("20231231235959", "2023-12-31T23:59:59Z"),
]

# (number, expected): every magnitude band and both sides of each boundary.
TIMESTAMP_CASES: list[tuple[int | float, str]] = [
    (0, "1970-01-01T00:00:00Z"),
    (1234567890, "2009-02-13T23:31:30Z"),
    (1704067200, NEW_YEAR_2024),
    (99_999_999_999, "5138-11-16T09:46:39Z"),  # largest seconds value
    (100_000_000_000, "1973-03-03T09:46:40Z"),  # smallest milliseconds value
    (1_704_067_200_000, NEW_YEAR_2024),
    (1_704_067_200_123, "2024-01-01T00:00:00.123Z"),
    (99_999_999_999_999, "5138-11-16T09:46:39.999Z"),
    (100_000_000_000_000, "1973-03-03T09:46:40Z"),  # smallest microseconds value
    (1_704_067_200_000_000, NEW_YEAR_2024),
    (1_704_067_200_123_456, "2024-01-01T00:00:00.123Z"),
    (99_999_999_999_999_999, "5138-11-16T09:46:39.999Z"),
    (100_000_000_000_000_000, "1973-03-03T09:46:40Z"),  # smallest nanoseconds value
    (1_704_067_200_000_000_000, NEW_YEAR_2024),
    (1_704_067_200_123_456_789, "2024-01-01T00:00:00.123Z"),
    (253_402_300_799_000_000_000, "9999-12-31T23:59:59Z"),
    (1704067200.0, NEW_YEAR_2024),
    (1704067200.5, "2024-01-01T00:00:00.500Z"),
    (1704067200.123, "2024-01-01T00:00:00.123Z"),
    (1704067200123.0, "2024-01-01T00:00:00.123Z"),
    (1.7040672e15, NEW_YEAR_2024),
    (1.7040672e18, NEW_YEAR_2024),
    (0.5, "1970-01-01T00:00:00.500Z"),
]

STRING_TIMESTAMP_CASES = [
    ("0", "1970-01-01T00:00:00Z"),
    ("1704067200", NEW_YEAR_2024),
    ("1704067200.5", "2024-01-01T00:00:00.500Z"),
    ("1704067200000", NEW_YEAR_2024),
    ("1704067200123", "2024-01-01T00:00:00.123Z"),
    ("1704067200000000", NEW_YEAR_2024),
    ("1704067200123456", "2024-01-01T00:00:00.123Z"),
    ("1704067200000000000", NEW_YEAR_2024),
    ("1704067200123456789", "2024-01-01T00:00:00.123Z"),
    ("99999999999", "5138-11-16T09:46:39Z"),
    ("100000000000", "1973-03-03T09:46:40Z"),
    (" 1704067200 ", NEW_YEAR_2024),
]

NAMED_CASES = [
    ("Mon, 01 Jan 2024 00:00:00 GMT", NEW_YEAR_2024),
    ("Mon, 01 Jan 2024 00:00:00 UTC", NEW_YEAR_2024),
    ("Mon, 01 Jan 2024 00:00:00 +0000", NEW_YEAR_2024),
    ("01 Jan 2024 00:00:00 +0000", NEW_YEAR_2024),
    ("1 Jan 2024 00:00:00 GMT", NEW_YEAR_2024),
    ("Mon, 01 Jan 2024 05:30:00 +0530", NEW_YEAR_2024),
    ("Mon, 01 Jan 2024 05:30:00 +05:30", NEW_YEAR_2024),
    ("Sun, 31 Dec 2023 19:00:00 EST", NEW_YEAR_2024),
    ("Sun, 31 Dec 2023 19:00:00 -0500", NEW_YEAR_2024),
    ("Sun, 06 Nov 1994 08:49:37 GMT", "1994-11-06T08:49:37Z"),  # RFC 7231's example
    ("Monday, 01 Jan 2024 00:00:00 GMT", NEW_YEAR_2024),
    ("January 1, 2024", NEW_YEAR_2024),
    ("Jan 1, 2024", NEW_YEAR_2024),
    ("Jan. 1, 2024", NEW_YEAR_2024),
    ("jan 1 2024", NEW_YEAR_2024),
    ("JANUARY 1, 2024", NEW_YEAR_2024),
    ("1 January 2024", NEW_YEAR_2024),
    ("1st January 2024", NEW_YEAR_2024),
    ("January 1st, 2024", NEW_YEAR_2024),
    ("Monday, January 1, 2024", NEW_YEAR_2024),
    ("Sept 3, 2024", "2024-09-03T00:00:00Z"),
    ("February 29, 2024", "2024-02-29T00:00:00Z"),
    ("January 1, 2024 10:30:00", "2024-01-01T10:30:00Z"),
    ("January 1, 2024, 10:30:00", "2024-01-01T10:30:00Z"),
    ("January 1, 2024 10:30", "2024-01-01T10:30:00Z"),
    ("Jan 1, 2024 10:30 PM", "2024-01-01T22:30:00Z"),
    ("Jan 1, 2024 12:15 AM", "2024-01-01T00:15:00Z"),
    ("January 1, 2024 10:30:00 +01:00", "2024-01-01T09:30:00Z"),
    ("March 15, 2024 10:30:00 PST", "2024-03-15T18:30:00Z"),
    ("1 Jan 2024 00:00:00.250 GMT", "2024-01-01T00:00:00.250Z"),
]

DOTNET_CASES = [
    ("/Date(1704067200000)/", NEW_YEAR_2024),
    ("/Date(1704067200000+0100)/", NEW_YEAR_2024),
    ("/Date(1704067200000-0500)/", NEW_YEAR_2024),
    ("/Date(1704067200123)/", "2024-01-01T00:00:00.123Z"),
    ("/Date(0)/", "1970-01-01T00:00:00Z"),
    # As a JSON-escaped string that was never decoded.
    ("\\/Date(1704067200000)\\/", NEW_YEAR_2024),
]

REJECTED_STRINGS = [
    # Ambiguous orders.
    "01/02/2024",
    "2024/01/02",
    "1/2/24",
    "01-02-2024",
    "02.01.2024",
    # Impossible calendar dates and times.
    "2024-02-30",
    "2023-02-29",
    "2023-02-29T00:00:00Z",
    "2024-13-01",
    "2024-00-10",
    "2024-04-31",
    "0000-01-01",
    "2024-01-01T24:00:00Z",
    "2024-01-01T23:60:00Z",
    "2024-01-01T23:59:60Z",
    "2024-01-01T00:00:00+24:00",
    "2024-01-01T00:00:00+05:60",
    "20240230",
    "20231301",
    "20230229",
    "00000000",
    "20240101250000",
    "20240101126000",
    "February 30, 2024",
    "Feb 29, 2023",
    "31 April 2024",
    "1 Jan 0000",
    # Blank and non-dates.
    "",
    "   ",
    "\n\t",
    "hello",
    "null",
    "None",
    "NaN",
    "inf",
    "today",
    "now",
    # Trailing or leading garbage.
    "2024-01-01x",
    "2024-01-01T00:00:00Zjunk",
    "2024-01-01T00:00:00Z Z",
    "x2024-01-01",
    "1704067200abc",
    "January 1, 2024 garbage",
    "January 1, 2024 10:30:00 XYZ",
    # Incomplete or malformed shapes.
    "2024-01",
    "2024-1-1",
    "2024-01-01T",
    "2024-01-01T10",
    "2024-01-01  10:00:00",
    "10000-01-01",
    "Jan 2024",
    "January 2024",
    "Jan 1",
    "January 1, 24",
    "Foo 1, 2024",
    "2024-01-01T00:00:00 EST",
    # Weekday contradicting the date (1 Jan 2024 was a Monday).
    "Tue, 01 Jan 2024 00:00:00 GMT",
    # Numbers we do not read as timestamps.
    "-1704067200",
    "+1704067200",
    "1e9",
    "1704067200.",
    ".5",
    "1_704_067_200",
    # .NET lookalikes.
    "/Date(abc)/",
    "/Date(-62135596800000)/",
    "/Date(1704067200000+01)/",
    "Date(1704067200000)",
    # Non-ASCII digits.
    "\u0662\u0660\u0662\u0664-01-01",
    "\uff12\uff10\uff12\uff14-01-01",
    # Out of range after the offset is applied.
    "9999-12-31T23:00:00-05:00",
    "0001-01-01T00:00:00+01:00",
]

REJECTED_OTHERS: list[object] = [
    None,
    True,
    False,
    [],
    ["2024-01-01"],
    {},
    {"date": "2024-01-01"},
    ("2024-01-01",),
    b"2024-01-01",
    object(),
    Decimal("1704067200"),
    datetime(2024, 1, 1, tzinfo=UTC),
    math.nan,
    math.inf,
    -math.inf,
    -1,
    -1704067200,
    -0.5,
    # Out of range: past 9999-12-31T23:59:59Z as nanoseconds, or absurdly large.
    253_402_300_800_000_000_000,
    10**30,
    10**5000,
    1e30,
    1e300,
    "9" * 5000,
]


@pytest.mark.parametrize(("value", "expected"), ISO_CASES)
def test_iso_8601(value: str, expected: str) -> None:
    assert normalise_date(value) == expected


@pytest.mark.parametrize(("value", "expected"), OFFSET_CASES)
def test_offsets_convert_to_utc(value: str, expected: str) -> None:
    assert normalise_date(value) == expected


@pytest.mark.parametrize(("value", "expected"), COMPACT_CASES)
def test_compact_dates(value: str, expected: str) -> None:
    assert normalise_date(value) == expected


@pytest.mark.parametrize(("value", "expected"), TIMESTAMP_CASES)
def test_numeric_timestamps(value: int | float, expected: str) -> None:
    assert normalise_date(value) == expected


@pytest.mark.parametrize(("value", "expected"), STRING_TIMESTAMP_CASES)
def test_string_timestamps(value: str, expected: str) -> None:
    assert normalise_date(value) == expected


@pytest.mark.parametrize(("value", "expected"), NAMED_CASES)
def test_named_month_dates(value: str, expected: str) -> None:
    assert normalise_date(value) == expected


@pytest.mark.parametrize(("value", "expected"), DOTNET_CASES)
def test_dotnet_json_dates(value: str, expected: str) -> None:
    assert normalise_date(value) == expected


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        # A string of 8 or 14 digits is a calendar date...
        ("20240101", NEW_YEAR_2024),
        ("20240101123456", "2024-01-01T12:34:56Z"),
        # ...an int with the same digits is a timestamp (seconds, then milliseconds)...
        (20240101, "1970-08-23T06:15:01Z"),
        (20240101123456, "2611-05-21T10:18:43.456Z"),
        # ...an impossible 8/14-digit string is rejected, not read as a timestamp...
        ("20240230", None),
        ("20240101246000", None),
        # ...and any other length of digits is a timestamp.
        ("2024010", "1970-01-24T10:13:30Z"),
        ("202401011", "1976-05-31T14:30:11Z"),
        ("20240101.5", "1970-08-23T06:15:01.500Z"),
        # Even a bare year: numeric strings are timestamps, as the spec says.
        ("2024", "1970-01-01T00:33:44Z"),
    ],
)
def test_compact_date_versus_timestamp(value: str | int, expected: str | None) -> None:
    assert normalise_date(value) == expected


@pytest.mark.parametrize("value", REJECTED_STRINGS)
def test_rejected_strings(value: str) -> None:
    assert normalise_date(value) is None
    assert parse_date(value) is None


@pytest.mark.parametrize("value", REJECTED_OTHERS, ids=lambda v: type(v).__name__)
def test_rejected_other_values(value: object) -> None:
    assert normalise_date(value) is None
    assert parse_date(value) is None


def test_parse_date_returns_aware_utc_with_full_precision() -> None:
    parsed = parse_date("2024-01-01T05:30:00.123456+05:30")
    assert parsed == datetime(2024, 1, 1, 0, 0, 0, 123456, tzinfo=UTC)
    assert parsed is not None
    assert parsed.utcoffset() == timedelta(0)


@pytest.mark.parametrize(
    "value",
    ["2024-01-01", 1704067200, "Mon, 01 Jan 2024 00:00:00 GMT", "/Date(1704067200000)/"],
)
def test_parse_date_is_the_same_instant(value: object) -> None:
    assert parse_date(value) == datetime(2024, 1, 1, tzinfo=UTC)


@pytest.mark.parametrize(
    "value",
    ["01/02/2024", "hello", "", "2024-02-30", None, True, [1, 2], {"a": 1}, -5, math.nan],
    ids=repr,
)
def test_display_date_passes_invalid_values_through(value: object) -> None:
    assert display_date(value) is value


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("2024-01-01T05:00:00+05:00", NEW_YEAR_2024),
        (1704067200000, NEW_YEAR_2024),
        ("Jan 1, 2024", NEW_YEAR_2024),
        (NEW_YEAR_2024, NEW_YEAR_2024),
    ],
)
def test_display_date_normalises_valid_values(value: object, expected: str) -> None:
    assert display_date(value) == expected


# database=None keeps hypothesis from writing a .hypothesis/ directory into the tree.
DATE_ALPHABET = "0123456789-:.,+/ TZtzJanFebMayDecMonSunGMTUTCESPDate()\\"
ANY_VALUE = st.one_of(
    st.text(),
    st.text(alphabet=DATE_ALPHABET, max_size=40),
    st.integers(),
    st.floats(allow_nan=True, allow_infinity=True),
    st.none(),
    st.booleans(),
    st.binary(),
    st.lists(st.integers(), max_size=3),
)


@settings(database=None, max_examples=500)
@given(ANY_VALUE)
def test_never_raises_and_output_is_idempotent(value: object) -> None:
    result = normalise_date(value)
    display_date(value)
    if result is not None:
        assert OUTPUT_SHAPE.fullmatch(result)
        assert normalise_date(result) == result


def _reference_format(moment: datetime) -> str:
    # Independent of contact_lookup.model.dates: isoformat, then milliseconds only when non-zero.
    base = moment.replace(microsecond=0, tzinfo=None).isoformat()
    millis = moment.microsecond // 1000
    return f"{base}.{millis:03d}Z" if millis else f"{base}Z"


@settings(database=None)
@given(st.datetimes())
def test_iso_round_trip_matches_reference(moment: datetime) -> None:
    assert normalise_date(moment.isoformat() + "Z") == _reference_format(moment)
    assert normalise_date(moment.isoformat() + "+00:00") == _reference_format(moment)


@settings(database=None)
@given(st.integers(min_value=0, max_value=99_999_999_999))
def test_second_timestamps_match_reference(seconds: int) -> None:
    expected = _reference_format(datetime(1970, 1, 1) + timedelta(seconds=seconds))
    assert normalise_date(seconds) == expected
    if len(str(seconds)) not in (8, 14):
        assert normalise_date(str(seconds)) == expected


@settings(database=None)
@given(st.integers(min_value=100_000_000, max_value=99_999_999_999))
def test_larger_units_match_reference(seconds: int) -> None:
    # From 1e8 seconds up, every scaled value lands in its own magnitude band.
    expected = _reference_format(datetime(1970, 1, 1) + timedelta(seconds=seconds))
    for scale in (10**3, 10**6, 10**9):
        assert normalise_date(seconds * scale) == expected
        if len(str(seconds * scale)) != 14:  # 14-digit strings are YYYYMMDDHHmmss
            assert normalise_date(str(seconds * scale)) == expected
