from pathlib import Path

import pytest

from contact_lookup.model.config import load_config, parse_config
from contact_lookup.model.errors import ConfigError
from contact_lookup.settings import Settings

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "contact-lookup.toml"


def test_example_config_loads_with_paths_relative_to_the_file() -> None:
    config = load_config(EXAMPLE)
    demo = config.connection("demo")
    assert demo.crm == "json" and demo.extension_lookup and demo.create_option
    assert demo.contacts == EXAMPLE.parent / "contacts.json"
    assert config.connection_for_extension("999").name == "demo"  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("table", "message"),
    [
        ({"connections": {"a": {}}}, "crm is required"),
        ({"connections": {"a": {"crm": "json"}}}, "needs contacts"),
        ({"connections": {"a": {"crm": "clio", "resolve": "newest"}}}, "resolve must be"),
        ({"connections": {"a": {"crm": "clio", "create_option": "yes"}}}, "must be a bool"),
        ({"connections": {"a": {"crm": "clio", "rate_limit": "fast"}}}, "rate_limit"),
        ({"connections": {"a": {"crm": "clio"}}, "extensions": {"1": "b"}}, "unknown connection"),
    ],
)
def test_bad_connections_name_the_problem(table: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        parse_config(table, Path("."))


def test_missing_file_and_bad_toml(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "nope.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("[connections\n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(bad)


def test_secret_comes_from_env_and_missing_one_is_named() -> None:
    config = parse_config(
        {"connections": {"a": {"crm": "clio", "token_env": "A_TOKEN"}}}, Path(".")
    )
    conn = config.connection("a")
    assert conn.secret({"A_TOKEN": "s3cret"}) == "s3cret"
    with pytest.raises(ConfigError, match="A_TOKEN"):
        conn.secret({})
    with pytest.raises(ConfigError, match="unknown connection 'b'"):
        config.connection("b")


def test_settings_defaults_follow_redis_url() -> None:
    s = Settings.from_env({"REDIS_URL": "redis://r:1/2"})
    assert (s.broker_url, s.result_backend, s.cache_url, s.state_url) == ("redis://r:1/2",) * 4
    split = Settings.from_env({"REDIS_URL": "redis://r:1/2", "CACHE_URL": "redis://lru:1/0"})
    assert (split.cache_url, split.state_url) == ("redis://lru:1/0", "redis://r:1/2")
    assert s.call_pop_deadline_s == 20 and s.log_format == "text"
    assert s.visibility_timeout_s > 120  # longer than the longest retry countdown


@pytest.mark.parametrize(
    ("env", "name"),
    [
        ({"REDIS_URL": "http://x"}, "REDIS_URL"),
        ({"BROKER_URL": "nats://x"}, "BROKER_URL"),
        ({"CALL_POP_DEADLINE": "soon"}, "CALL_POP_DEADLINE"),
        ({"VISIBILITY_TIMEOUT": "0"}, "VISIBILITY_TIMEOUT"),
        ({"LOG_FORMAT": "xml"}, "LOG_FORMAT"),
        ({"CACHE_URL": "ftp://x"}, "CACHE_URL"),
        ({"STATE_URL": "amqp://x"}, "STATE_URL"),
    ],
)
def test_bad_settings_name_the_variable(env: dict, name: str) -> None:
    with pytest.raises(ConfigError, match=name):
        Settings.from_env(env)


def test_settings_errors_never_echo_a_password() -> None:
    with pytest.raises(ConfigError) as err:
        Settings.from_env({"BROKER_URL": "nats://user:hunter2@x"})
    assert "hunter2" not in str(err.value)
    assert "hunter2" not in repr(Settings.from_env({"RC_VERIFICATION_TOKEN": "hunter2"}))
