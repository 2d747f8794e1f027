"""contact_lookup/model/headers.py: secrets a worker refuses because no header can carry them."""

from __future__ import annotations

import pytest

from contact_lookup.model.errors import ConfigError
from contact_lookup.model.headers import check_sendable, header_value_problem

TOKEN = "ab12CD34ef56"


@pytest.mark.parametrize(
    "value,problem",
    [
        (f"“{TOKEN}”", "character 1 is U+201C, outside ISO-8859-1"),
        (f"{TOKEN}\u00a0", "starts or ends with whitespace"),  # NBSP is Latin-1 whitespace
        (f"{TOKEN}\r\nX-Injected: 1", "control character U+000D"),
        (f"{TOKEN}\x00", "control character U+0000"),
        (f" {TOKEN}", "starts or ends with whitespace"),
    ],
)
def test_values_no_header_can_carry_are_named_without_quoting_them(
    value: str, problem: str
) -> None:
    found = header_value_problem(value)
    assert found is not None and problem in found and TOKEN not in found


@pytest.mark.parametrize("value", [TOKEN, "eyJhbGciOi.J9.x-_~+/=", "a\tb", "caf\u00e9-42"])
def test_values_a_header_can_carry_pass(value: str) -> None:
    assert header_value_problem(value) is None
    ("X: " + value).encode("latin-1")  # what http.client does with it


def test_check_sendable_names_every_bad_variable_and_no_value() -> None:
    env = {"CRM_A_TOKEN": f"“{TOKEN}”", "CRM_CREDENTIAL": f"{TOKEN}\n", "OK_TOKEN": TOKEN}
    with pytest.raises(ConfigError) as refused:
        check_sendable(["CRM_A_TOKEN", "CRM_CREDENTIAL", "OK_TOKEN", "UNSET"], env)
    text = str(refused.value)
    assert "CRM_A_TOKEN" in text and "CRM_CREDENTIAL" in text and "OK_TOKEN" not in text
    assert TOKEN not in text
    check_sendable(["OK_TOKEN", "UNSET"], env)  # nothing to refuse
