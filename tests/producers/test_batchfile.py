"""Numbers files as Excel and people write them (producers/batchfile.py). Pure: no Redis."""

from __future__ import annotations

import pytest

from contact_lookup.model.errors import InvalidInput
from producers.batchfile import decode, read_numbers

ROWS = [("Lovelace, Ada", "+14155550100"), ("Turing; Alan", "(415) 555-0123")]


def table(header: str, delimiter: str, newline: str = "\r\n") -> str:
    name, phone = header.split("|")
    lines = [f"{name}{delimiter}{phone}"]
    lines += [f'"{who}"{delimiter}"{number}"' for who, number in ROWS]
    return newline.join(lines) + newline


EXPECTED = [(2, "+14155550100"), (3, "(415) 555-0123")]


@pytest.mark.parametrize(
    ("label", "data"),
    [
        ("Excel CSV UTF-8 (BOM)", b"\xef\xbb\xbf" + table("Name|phoneNumber", ",").encode()),
        ("UTF-8, no BOM, LF", table("Name|phoneNumber", ",", "\n").encode()),
        ("Excel Unicode text (UTF-16 LE, BOM, tab)", table("Name|Phone", "\t").encode("utf-16")),
        ("UTF-16 BE with BOM", b"\xfe\xff" + table("Name|Phone", "\t").encode("utf-16-be")),
        ("UTF-16 LE without BOM", table("Name|Phone", "\t").encode("utf-16-le")),
        ("semicolon CSV (comma-decimal locales)", table("Name|phone number", ";").encode()),
        ("Windows-1252 (Excel CSV, western locale)", table("Nom|Téléphone", ";").encode("cp1252")),
        ("header in capitals with underscore", table("NAME|PHONE_NUMBER", ",").encode()),
    ],
)
def test_spreadsheet_exports_give_their_numbers_with_line_numbers(label: str, data: bytes) -> None:
    column = "téléphone" if "1252" in label else None
    assert read_numbers(data, name="n.csv", column=column) == EXPECTED, label


def test_windows_1252_text_is_decoded_not_garbled() -> None:
    assert decode("Nom;Téléphone\r\n".encode("cp1252")) == "Nom;Téléphone\r\n"


def test_column_option_picks_a_column_by_its_header() -> None:
    data = b"Office phone,Mobil Nr\r\n+14155550100,+14155550199\r\n"
    assert read_numbers(data, column="mobil nr") == [(2, "+14155550199")]
    assert read_numbers(data, column="Office Phone") == [(2, "+14155550100")]


def test_first_recognised_header_wins_in_the_documented_order() -> None:
    data = b"Mobile,Phone\n+14155550199,+14155550100\n"
    assert read_numbers(data) == [(2, "+14155550100")]


def test_a_single_column_with_a_header_is_a_table() -> None:
    assert read_numbers(b"Phone\r\n+14155550100\r\n\r\n(415) 555-0123\r\n") == [
        (2, "+14155550100"),
        (4, "(415) 555-0123"),
    ]


def test_plain_list_keeps_line_numbers_and_skips_blanks_and_comments() -> None:
    data = b"# numbers to check\r\n+14155550100\r\n\r\n  (415) 555-0123  \r\n"
    assert read_numbers(data) == [(2, "+14155550100"), (4, "(415) 555-0123")]


def test_quoted_multiline_field_reports_the_line_the_record_ends_on() -> None:
    data = b'Name,Phone\n"Ada\nLovelace",+14155550100\nAlan,+14155550123\n'
    assert read_numbers(data) == [(3, "+14155550100"), (4, "+14155550123")]


def test_no_number_column_names_the_file_and_the_header_line() -> None:
    with pytest.raises(InvalidInput) as caught:
        read_numbers(b"\n\nName;Email\nAda;ada@example.com\n", name="people.csv")
    text = caught.value.user_message()
    assert "people.csv line 3: no phone number column in the header ('Name', 'Email')" in text
    assert "--column" in text


def test_unknown_column_option_and_empty_file_are_clear_errors() -> None:
    with pytest.raises(InvalidInput, match=r"n.csv line 1: no column 'Fax'"):
        read_numbers(b"Name,Phone\nAda,+14155550100\n", name="n.csv", column="Fax")
    with pytest.raises(InvalidInput, match=r"empty.txt: the file has no numbers"):
        read_numbers(b"\r\n  \r\n", name="empty.txt")
