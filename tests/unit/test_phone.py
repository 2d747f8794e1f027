import pytest

from contact_lookup.model import phone
from contact_lookup.model.errors import InvalidPhoneNumber


@pytest.mark.parametrize(
    ("raw", "region", "expected"),
    [
        ("+14155550100", "US", "+14155550100"),
        ("14155550100", "US", "+14155550100"),  # RingCentral call logs drop the '+'
        (" 14155550100", "US", "+14155550100"),  # '+' URL-decoded to a space
        ("(415) 555-0100", "US", "+14155550100"),
        ("415.555.0100", "US", "+14155550100"),
        ("+44 20 7946 0958", "US", "+442079460958"),
        ("020 7946 0958", "GB", "+442079460958"),
        ("442079460958", "US", "+442079460958"),  # not US digits: read as international
        ("030 901820", "DE", "+4930901820"),
        ("+61 2 9374 4000", "US", "+61293744000"),
        ("02 9374 4000", "AU", "+61293744000"),
        ("+33 1 42 68 53 00", "GB", "+33142685300"),
        ("06 12 34 56 78", "FR", "+33612345678"),
        ("+81 3-3224-9999", "US", "+81332249999"),
        ("+91 98765 43210", "US", "+919876543210"),
        ("0044 20 7946 0958", "FR", "+442079460958"),  # international prefix of France
    ],
)
def test_normalise_accepts_real_numbers(raw: str, region: str, expected: str) -> None:
    assert phone.to_e164(raw, region) == expected


@pytest.mark.parametrize(
    "raw",
    [
        "",
        "   ",
        None,
        14155550100,
        "12",
        "12345",
        "not a number",
        "+1415555010",
        "+999123456789",
        "(415) 555-01000000",
        "1" * 100,
        "+1 (415) 555-0100 ext",
    ],
)
def test_normalise_rejects_invalid(raw: object) -> None:
    with pytest.raises(InvalidPhoneNumber) as err:
        phone.to_e164(raw, "US")
    assert "no CRM lookup was made" in err.value.user_message()


@pytest.mark.parametrize(
    ("raw", "expected"), [("102", "102"), (" 7 ", "7"), ("1234567890", "1234567890")]
)
def test_extension_keeps_raw_digits(raw: str, expected: str) -> None:
    assert phone.extension(raw) == expected


@pytest.mark.parametrize("raw", ["", "+102", "10a", "12345678901", None, "1 02"])
def test_extension_rejects_non_digits(raw: object) -> None:
    with pytest.raises(InvalidPhoneNumber):
        phone.extension(raw)


def test_apply_format_fills_placeholders_in_order() -> None:
    assert phone.apply_format("(***) ***-****", "4155550100") == "(415) 555-0100"
    assert phone.apply_format("###-###-####", "4155550100") == "415-555-0100"
    assert phone.apply_format("+1 *** #** ****", "4155550100") == "+1 415 555 0100"


def test_apply_format_skips_wrong_digit_count() -> None:
    assert phone.apply_format("(***) ***-****", "2079460958") == "(207) 946-0958"
    assert phone.apply_format("(***) ***-****", "207946095") is None
    assert phone.apply_format("****", "4155550100") is None


def test_queries_are_e164_then_distinct_formats_in_order() -> None:
    formats = " (***) ***-**** ,***-***-****, (***) ***-****,  ,**-**, ##########"
    assert phone.queries("+14155550100", formats) == [
        "+14155550100",
        "(415) 555-0100",
        "415-555-0100",
        "4155550100",
    ]


def test_queries_without_formats_is_only_e164() -> None:
    assert phone.queries("+442079460958", "") == ["+442079460958"]
    assert phone.queries("+442079460958", None) == ["+442079460958"]


def test_queries_skip_formats_that_do_not_fit_the_country() -> None:
    # A UK national number has 10 digits here too, but a 9-digit German one does not.
    assert phone.queries("+4930901820", "(***) ***-****") == ["+4930901820"]


# ----- issue 11: numbers as the caller gave them ----------------------------------------------
@pytest.mark.parametrize(
    ("raw", "region", "expected"),
    [
        # Digits without '+' are RingCentral's E.164 with the '+' dropped, in every region:
        # reading them in the region first made these wrong national numbers.
        ("442079460958", "DE", "+442079460958"),  # not +49 442079460958
        ("12025550123", "AT", "+12025550123"),  # not +43 12025550123
        ("33142685300", "IT", "+33142685300"),  # not +39 33142685300
        ("4930901820", "BR", "+4930901820"),  # not +55 4930901820
        # ...and in the region only when the '+' reading is no valid number.
        ("4155550100", "US", "+14155550100"),
    ],
)
def test_bare_digits_are_e164_without_the_plus_in_every_region(
    raw: str, region: str, expected: str
) -> None:
    assert phone.to_e164(raw, region) == expected


@pytest.mark.parametrize(
    "raw",
    [
        "+5215555550142",  # Mexico's pre-2019 mobile prefix, still sent by carriers
        "5215555550142",  # the same with the '+' dropped
        "+11234567890",  # NANP area code 123 is unassigned, but the shape is a number
    ],
)
def test_plus_number_that_parses_but_is_not_valid_is_searched_as_given(raw: str) -> None:
    e164 = phone.to_e164(raw, "US")
    assert e164 == "+" + raw.lstrip("+")
    assert phone.queries(e164, "(***) ***-****")[0] == e164


@pytest.mark.parametrize(
    "raw",
    [
        "+1415555010",  # too short for the NANP
        "+999123456789",  # no such country code
        "+1 415 555 0100 398",  # four digits over the NANP's ten: a typo, not a number
        "+52 1 555 555 0142 9",  # two over Mexico's longest
        "+1 (415) 555-0100 ext",  # letters: read as keypad digits, never "as given"
    ],
)
def test_what_cannot_be_a_phone_number_is_still_refused(raw: str) -> None:
    with pytest.raises(InvalidPhoneNumber):
        phone.to_e164(raw, "US")


@pytest.mark.parametrize(
    ("values", "number", "region", "terms", "expected"),
    [
        (["+442079460958"], "+12079460958", "US", ["+12079460958"], None),
        (["+1 207-946-0958"], "+12079460958", "US", ["+12079460958"], "+1 207-946-0958"),
        (["(415) 555-0100"], "+14155550100", "US", ["+14155550100"], "(415) 555-0100"),
        (["(415) 555-0100"], "+14155550100", "GB", ["+14155550100"], None),  # GB reading
        (["020 7946 0958"], "+442079460958", "GB", ["+442079460958"], "020 7946 0958"),
        (["14155550100"], "+14155550100", "DE", ["+14155550100"], "14155550100"),
        (["102 Harbour St", None, 7], "+14155550102", "US", ["+14155550102"], None),
        (["415.555.0100 x12"], "+14155550100", "US", ["+14155550100"], "415.555.0100 x12"),
        # a value equal to a queried format string counts even where it would not parse
        (
            ["555-0100 (desk)"],
            "+14155550100",
            "US",
            ["+14155550100", "555-0100 (desk)"],
            "555-0100 (desk)",
        ),
        ([], "+14155550100", "US", ["+14155550100"], None),
    ],
)
def test_matching_value_is_the_same_number_not_the_same_digits(
    values: list[object], number: str, region: str, terms: list[str], expected: str | None
) -> None:
    assert phone.matching_value(values, number, region, terms) == expected


def test_matching_extension_is_equality_of_digits() -> None:
    assert phone.matching_extension(["1102", " 102 "], "102") == " 102 "
    assert phone.matching_extension(["1102", "1020", 102], "102") == "102"
    assert phone.matching_extension(["+14155550102", True], "102") is None
