"""The one redaction rule: configured secret values by value, credentials by shape, in
messages and tracebacks alike."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from contact_lookup.logs import RedactingFilter
from contact_lookup.model.config import parse_config
from contact_lookup.model.redaction import REDACTED, Redactor, redact_url, secret_names

CANARY = "canary-7f3a9c1e55"


def test_configured_secret_names_come_from_the_file_not_from_suffixes() -> None:
    config = parse_config(
        {
            "connections": {
                "a": {"crm": "clio", "token_env": "CLIO_CREDS", "base_url": "http://x"},
                "b": {"crm": "bullhorn", "token_env": "BH", "password_env": "BH_PASS_WORD"},
            }
        },
        Path("."),
    )
    assert secret_names(config.connections.values()) == {"CLIO_CREDS", "BH", "BH_PASS_WORD"}
    env = {"CLIO_CREDS": CANARY, "BH": "bh-access-123456", "BH_PASS_WORD": "pw-9876543"}
    redact = Redactor.from_env(secret_names(config.connections.values()), env)
    text = f"GET /x?q=1 {CANARY} then bh-access-123456 and pw-9876543"
    out = redact(text)
    assert CANARY not in out and "bh-access-123456" not in out and "pw-9876543" not in out


@pytest.mark.parametrize(
    ("raw", "leak"),
    [
        ("Authorization: Bearer abc.def-ghi_jkl", "abc.def-ghi_jkl"),
        ("{'Authorization': 'Token tok-998877'}", "tok-998877"),
        ("headers={'x-api-token': 'pd-55667788'}", "pd-55667788"),
        ('{"refresh_token": "rt-0011223344", "expires_in": 3600}', "rt-0011223344"),
        ("GET https://h/rest-services/login?version=*&access_token=AT-123456", "AT-123456"),
        ("https://h/search?BhRestToken=bh-778899&query=x", "bh-778899"),
        ("redis://:s3cr3t%2Fpw@redis:6379/0", "s3cr3t%2Fpw"),
        ("Basic dXNlcjpwYXNzd29yZA==", "dXNlcjpwYXNzd29yZA=="),
    ],
)
def test_credential_shaped_values_are_redacted_without_configuration(raw: str, leak: str) -> None:
    out = Redactor()(raw)
    assert leak not in out and REDACTED in out


def test_typographic_quotes_do_not_hide_a_secret() -> None:
    """A token pasted with typographic quotes: the error text repeats the header value."""
    token = f"\u201c{CANARY}\u201d"
    redact = Redactor.from_env(["ODD_NAME"], {"ODD_NAME": token})
    try:
        "Bearer " + token.encode("latin-1").decode()
    except UnicodeEncodeError as exc:
        assert CANARY not in redact.exception(exc)
        assert CANARY not in redact.traceback(exc)


def test_short_values_are_left_alone_in_ordinary_text() -> None:
    assert Redactor(["abc"])("abc def") == "abc def"


def test_redact_url_keeps_everything_but_the_password() -> None:
    assert redact_url("redis://u:p%40ss@h:1/2") == f"redis://u:{REDACTED}@h:1/2"
    assert redact_url("redis://h:1/0") == "redis://h:1/0"


def test_log_filter_redacts_tracebacks_not_only_messages() -> None:
    redactor = Redactor([CANARY])
    log_filter = RedactingFilter(redactor)
    try:
        raise ValueError(f"bad header value {CANARY}")
    except ValueError:
        import sys

        record = logging.LogRecord(
            "t", logging.ERROR, __file__, 1, "failed %s", (CANARY,), sys.exc_info()
        )
    assert log_filter.filter(record)
    formatted = logging.Formatter().format(record)
    assert CANARY not in formatted
    assert "ValueError" in formatted and REDACTED in formatted
