"""Pure helpers behind operations: number masking, the log filter, metric labels, JSON depth,
header-safe and placeholder secrets, password-safe URLs, the --metrics-port option."""

from __future__ import annotations

import json
import logging

import pytest
import redis

from contact_lookup import metrics
from contact_lookup.logs import JsonFormatter, PersonalDataFilter, mask_number, mask_numbers
from contact_lookup.model.errors import ConfigError
from contact_lookup.preflight import header_problem, placeholder_problem
from contact_lookup.settings import Settings, with_password
from producers.webhook import MAX_JSON_DEPTH, too_deep
from worker.command import split_metrics_port


@pytest.mark.parametrize(
    ("text", "masked"),
    [
        ("call from +14155550100 now", "call from ***0100 now"),
        ("(415) 555-0100", "***0100"),
        ("415-555-0199 and 415.555.0123", "***0199 and ***0123"),
        ("+44 20 7946 0958", "***0958"),
    ],
)
def test_numbers_are_masked_to_their_last_4_digits(text: str, masked: str) -> None:
    assert mask_numbers(text) == masked


@pytest.mark.parametrize(
    "text",
    [
        "Task find_contact[5d1c8f0e-2b7a-4c1e-9a53-0c6f3e1b7d42] received",
        "succeeded in 0.012345678s",
        "on 2026-11-30T01:02:03.456Z",
        "extension 1234",
        "retry 3 in 1.500 s",
    ],
)
def test_ids_durations_dates_and_short_numbers_are_left_alone(text: str) -> None:
    assert mask_numbers(text) == text


def test_mask_number() -> None:
    assert mask_number("+14155550100") == "***0100"
    assert mask_number(None) == "-"


def test_celery_success_line_loses_its_result() -> None:
    record = logging.LogRecord(
        "celery.app.trace",
        logging.INFO,
        __file__,
        1,
        "Task %(name)s[%(id)s] succeeded in %(runtime)ss: %(return_value)s",
        None,
        None,
    )
    record.args = {  # a LogRecord built with a dict argument keeps it (Celery's way)
        "name": "find_contact",
        "id": "t-1",
        "runtime": 0.01,
        "return_value": {"name": "Ada Lovelace", "email": "ada@example.com"},
        "args": "()",
        "kwargs": "{'phoneNumber': '+14155550100'}",
    }
    assert PersonalDataFilter().filter(record)
    line = JsonFormatter().format(record)
    data = json.loads(line)
    assert data["message"] == "Task find_contact[t-1] succeeded in 0.01s: [withheld]"
    assert "Ada" not in line and "ada@" not in line and "5550100" not in line
    assert data["ts"].endswith("Z") and data["ts"][-5] == "."


@pytest.mark.parametrize(
    ("result", "outcome"),
    [
        ({"successful": False}, "failed"),
        ({"successful": True, "extraDataTracking": {"isCached": True}}, "cached"),
        ({"successful": True, "extraDataTracking": {"isCoalesced": True}}, "coalesced"),
        ({"successful": True, "matchedContactInfo": [{"id": "1"}]}, "matched"),
        ({"successful": True, "matchedContactInfo": [{"isNewContact": True}]}, "not_found"),
    ],
)
def test_outcome_labels(result: dict[str, object], outcome: str) -> None:
    assert metrics.outcome(result) == outcome


def test_skip_reasons_become_bounded_classes() -> None:
    assert metrics.reason_class("unknown event '/x/+14155550100': no job for it") == (
        "unknown_event"
    )
    assert metrics.reason_class("something new and odd +14155550100") == "other"
    assert metrics.reason_class(None) == "none"


def test_json_depth() -> None:
    assert not too_deep(b"[" * MAX_JSON_DEPTH + b"]" * MAX_JSON_DEPTH)
    assert too_deep(b"[" * (MAX_JSON_DEPTH + 1) + b"]" * (MAX_JSON_DEPTH + 1))
    assert not too_deep(b'{"a": "' + b"[" * 100 + b'"}')  # brackets inside a string
    assert not too_deep(b'"\\"' + b"[" * 100)  # an unterminated string hides the rest


@pytest.mark.parametrize("value", ["\u201ctoken\u201d", "token\n", " token", "tok\x00en"])
def test_values_unfit_for_a_header(value: str) -> None:
    problem = header_problem("SOME_TOKEN", value)
    assert problem and "SOME_TOKEN" in problem and value.strip() not in problem


def test_header_fit_value() -> None:
    assert header_problem("SOME_TOKEN", "abc DEF-123_~") is None


@pytest.mark.parametrize("value", ["change-me", "CHANGE_ME", "change-me-too", "<token>", "xxx"])
def test_placeholders(value: str) -> None:
    assert placeholder_problem("X", value)


def test_real_secret_is_not_a_placeholder() -> None:
    assert placeholder_problem("X", "k3J9-qq_81") is None


def test_password_is_percent_encoded_into_redis_urls_only() -> None:
    password = "p/#@:w%x?y"
    url = with_password("redis://cache:6379/0", password)
    assert redis.connection.parse_url(url)["password"] == password
    assert with_password("redis://:given@cache:6379/0", password) == "redis://:given@cache:6379/0"
    assert with_password("amqp://guest@mq//", password) == "amqp://guest@mq//"
    settings = Settings.from_env(
        {
            "REDIS_URL": "redis://cache:6379/0",
            "BROKER_URL": "redis://broker/0",
            "REDIS_PASSWORD": password,
        }
    )
    for url in (settings.broker_url, settings.result_backend, settings.cache_url):
        assert redis.connection.parse_url(url)["password"] == password


def test_placeholder_deployment_secret_is_refused() -> None:
    with pytest.raises(ConfigError, match="RC_VERIFICATION_TOKEN"):
        Settings.from_env({"RC_VERIFICATION_TOKEN": "change-me"})


def test_metrics_port_option() -> None:
    assert split_metrics_port(["-Q", "x", "--metrics-port", "9100"]) == (
        ("127.0.0.1", 9100),
        ["-Q", "x"],
    )
    assert split_metrics_port(["--metrics-port=0.0.0.0:9101"])[0] == ("0.0.0.0", 9101)
    assert split_metrics_port(["-c", "4"]) == (None, ["-c", "4"])
    with pytest.raises(ConfigError):
        split_metrics_port(["--metrics-port", "nope"])


@pytest.mark.parametrize("seconds", [0.00331, 0.0125, 1.23456])
def test_the_access_line_keeps_its_status_and_duration(
    seconds: float, monkeypatch: pytest.MonkeyPatch
) -> None:
    """gunicorn's access line goes through the number masking like every line: its status
    and duration must not read as a phone number. "200 12.50" (7 digits) did, from 10 ms up,
    and the line said "POST /webhook/ringcentral ***1250 ms"."""
    import datetime
    import io
    from types import SimpleNamespace

    from gunicorn.config import Config

    from producers.gunicorn_logs import ServiceLogger

    monkeypatch.setenv("LOG_FORMAT", "text")
    logger = ServiceLogger(Config())
    out = io.StringIO()
    logger.access_log.handlers[0].setStream(out)  # type: ignore[attr-defined]
    req = SimpleNamespace(method="POST", path="/webhook/ringcentral")
    resp = SimpleNamespace(status_code=200)
    logger.access(resp, req, {}, datetime.timedelta(seconds=seconds))
    line = out.getvalue()
    assert f"POST /webhook/ringcentral 200 in {seconds * 1000:.2f} ms" in line, line
    assert "***" not in line
