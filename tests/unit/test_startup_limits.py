"""Start-up refuses settings that would break at-least-once delivery (contact_lookup/settings.py),
each with one line naming the setting and the limit, derived from contact_lookup/model/retry.py."""

from __future__ import annotations

import pytest

from contact_lookup.model import retry
from contact_lookup.model.errors import ConfigError, RateLimited
from contact_lookup.settings import Settings
from tasks import backoff


def refused(env: dict[str, str]) -> str:
    with pytest.raises(ConfigError) as caught:
        Settings.from_env(env)
    text = str(caught.value)
    assert "\n" not in text
    return text


@pytest.mark.parametrize("value", ["10", "120"])
def test_visibility_timeout_not_above_the_longest_countdown_is_refused(value: str) -> None:
    text = refused({"VISIBILITY_TIMEOUT": value})
    assert text.startswith(f"VISIBILITY_TIMEOUT={value} must be above RETRY_MAX_DELAY=120 s")


def test_visibility_timeout_just_above_the_countdown_cap_is_accepted() -> None:
    assert Settings.from_env({"VISIBILITY_TIMEOUT": "121"}).visibility_timeout_s == 121


def test_a_shorter_countdown_cap_allows_a_shorter_visibility_timeout_and_bounds_every_wait() -> (
    None
):
    env = {"VISIBILITY_TIMEOUT": "5", "RETRY_MAX_DELAY": "4", "CALL_POP_DEADLINE": "4"}
    settings = Settings.from_env(env)
    cap = settings.retry_max_delay_s
    assert backoff.delay_s(RateLimited(retry_after_s=3600), 0, cap_s=cap) == 4
    assert backoff.delay_s(RateLimited(retry_after_s=None), 20, cap_s=cap) <= 4
    assert backoff.deferral_delay_s(RateLimited(retry_after_s=59.0), cap_s=cap) <= 4


def test_call_pop_deadline_not_below_the_visibility_timeout_is_refused() -> None:
    text = refused({"CALL_POP_DEADLINE": "600"})
    assert text == "CALL_POP_DEADLINE=600 must be below VISIBILITY_TIMEOUT=600 s"


def test_result_expires_shorter_than_the_retry_horizon_is_refused() -> None:
    horizon = (max(retry.MAX_RETRIES.values()) + retry.MAX_DEFERRALS) * 120 + 600
    text = refused({"RESULT_EXPIRES": str(horizon - 1)})
    assert text.startswith(f"RESULT_EXPIRES={horizon - 1} must be at least {horizon} s")
    assert Settings.from_env({"RESULT_EXPIRES": str(horizon)}).result_expires_s == horizon


def test_the_result_limit_is_derived_from_the_retry_bounds(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(retry, "MAX_DEFERRALS", 10)
    # (10 retries + 10 deferrals) x 120 s + 600 s = 3000 s
    assert Settings.from_env({"RESULT_EXPIRES": "3000"}).result_expires_s == 3000
    assert "at least 3000 s" in refused({"RESULT_EXPIRES": "2999"})
