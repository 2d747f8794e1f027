"""Sentinel URLs (contact_lookup/redis_urls.py): parsed into sentinels, master name, database
and password; incomplete ones refused naming the variable; the form Celery and kombu take."""

from __future__ import annotations

import pytest

from contact_lookup.model.errors import ConfigError
from contact_lookup.redis_urls import celery_url_and_options, parse_sentinel
from contact_lookup.settings import Settings

URL = "sentinel://:pw@s1:26379/2;sentinel://s2:26380;sentinel://s3?master_name=cl-master"


def test_a_sentinel_url_is_parsed() -> None:
    parsed = parse_sentinel(URL)
    assert parsed.sentinels == (("s1", 26379), ("s2", 26380), ("s3", 26379))
    assert (parsed.master_name, parsed.db, parsed.password) == ("cl-master", 2, "pw")
    assert parsed.celery_url == URL.split("?")[0]


def test_celery_gets_the_url_without_its_query_and_the_master_as_an_option() -> None:
    assert celery_url_and_options(URL) == (URL.split("?")[0], {"master_name": "cl-master"})
    assert celery_url_and_options("redis://r:6379/0") == ("redis://r:6379/0", {})


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("sentinel://s1:26379/0", "master_name"),
        ("sentinel://s1/0;redis://s2?master_name=m", "sentinel://host:port"),
        ("sentinel://s1;sentinel://s2/3?master_name=m", "first sentinel:// part only"),
        ("sentinel://s1/x?master_name=m", "must be a number"),
    ],
)
def test_incomplete_sentinel_urls_are_refused_naming_the_variable(url: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message) as raised:
        Settings.from_env({"STATE_URL": url})
    assert "STATE_URL" in str(raised.value)


def test_every_redis_role_takes_a_sentinel_url() -> None:
    env = {name: URL for name in ("BROKER_URL", "RESULT_BACKEND", "CACHE_URL", "STATE_URL")}
    settings = Settings.from_env(env)
    assert settings.state_url == settings.cache_url == settings.broker_url == URL
