"""``contact-lookup check`` against real parts: the test Redis, a private Redis that may
evict, and the Clio simulator over HTTP with a right, a wrong and an unusable token."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from crmsim.clio import ClioSimulator
from localredis import EmbeddedRedis
from producers.cli import main
from tests.conftest import EXAMPLES

TOKEN = "clio-check-token-3c9a"


@pytest.fixture
def clio() -> Iterator[ClioSimulator]:
    with ClioSimulator(json.loads((EXAMPLES / "contacts.json").read_text()), token=TOKEN) as sim:
        yield sim


def write(connections: Path, sim: ClioSimulator, *names: tuple[str, str]) -> None:
    text = connections.read_text()
    for name, env in names:
        text += (
            f'\n[connections.{name}]\ncrm = "clio"\nbase_url = "{sim.url}"\n'
            f'token_env = "{env}"\nrc_account = "1"\n'
        )
    connections.write_text(text)


def check(capsys: pytest.CaptureFixture[str]) -> tuple[int, dict[str, str], str]:
    capsys.readouterr()
    code = main(["check"])
    text = capsys.readouterr().out
    out = text.splitlines()
    items = {}
    for line in out[:-1]:
        status, _, rest = line.partition(" ")
        item, _, _detail = rest.strip().partition(": ")
        items[item] = status
    assert out[-1].startswith("check: ")
    return code, items, text


def env(monkeypatch: pytest.MonkeyPatch, url: str, connections: Path, **extra: str) -> None:
    monkeypatch.setenv("REDIS_URL", url)
    monkeypatch.setenv("CONTACT_LOOKUP_CONFIG", str(connections))
    for name in ("BROKER_URL", "RESULT_BACKEND", "CACHE_URL", "STATE_URL"):
        monkeypatch.delenv(name, raising=False)
    for key, value in extra.items():
        monkeypatch.setenv(key, value)


def test_check_passes_on_a_sound_deployment(
    ops_url: str,
    connections: Path,
    clio: ClioSimulator,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    write(connections, clio, ("acme", "ACME_CHECK_TOKEN"))
    env(monkeypatch, ops_url, connections, ACME_CHECK_TOKEN=TOKEN)
    code, items, _text = check(capsys)
    assert code == 0, items
    expected = {"environment", "connections file", "secret ACME_CHECK_TOKEN", "broker"}
    expected |= {"result backend", "cache", "state", "connection demo", "connection acme"}
    assert set(items) == expected
    assert set(items.values()) == {"ok"}


def test_check_names_each_failure_and_exits_1(
    ops_url: str,
    connections: Path,
    clio: ClioSimulator,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    write(
        connections,
        clio,
        ("good", "GOOD_CHECK_TOKEN"),
        ("wrong", "WRONG_CHECK_TOKEN"),
        ("quoted", "QUOTED_CHECK_TOKEN"),
        ("unset", "UNSET_CHECK_TOKEN"),
    )
    evicting = EmbeddedRedis().start()
    try:
        with redis.Redis.from_url(evicting.url) as client:
            client.config_set("maxmemory-policy", "allkeys-lru")
        env(
            monkeypatch,
            ops_url,
            connections,
            GOOD_CHECK_TOKEN=TOKEN,
            WRONG_CHECK_TOKEN="not-the-token",
            QUOTED_CHECK_TOKEN=f"\u201c{TOKEN}\u201d",
            STATE_URL=evicting.url,
        )
        monkeypatch.delenv("UNSET_CHECK_TOKEN", raising=False)
        code, items, text = check(capsys)
    finally:
        evicting.cleanup()
    assert code == 1
    assert items["connection good"] == "ok"
    assert items["connection wrong"] == "FAIL"  # 401 from the simulator
    assert items["secret QUOTED_CHECK_TOKEN"] == "FAIL"
    assert items["connection quoted"] == "FAIL"
    assert items["secret UNSET_CHECK_TOKEN"] == "FAIL"
    assert items["state"] == "FAIL"  # a state Redis that evicts loses limiter buckets
    assert items["cache"] == "ok" and items["broker"] == "ok"
    assert TOKEN not in text and "QUOTED_CHECK_TOKEN" in text  # named, never shown


def test_check_reports_unreachable_redis(
    connections: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    env(monkeypatch, "redis://127.0.0.1:1/0", connections)
    code, items, _text = check(capsys)
    assert code == 1
    assert [items[r] for r in ("broker", "result backend", "cache", "state")] == ["FAIL"] * 4
    assert items["connection demo"] == "ok"


def test_a_password_with_url_characters_reaches_every_redis_role(
    connections: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """docker-compose's way: URLs without a password, REDIS_PASSWORD on its own."""
    password = "p/#@:w%x?y"
    server = EmbeddedRedis(password=password).start()
    try:
        base = f"redis://127.0.0.1:{server.port}"
        env(monkeypatch, f"{base}/0", connections, REDIS_PASSWORD=password)
        monkeypatch.setenv("BROKER_URL", f"{base}/0")
        monkeypatch.setenv("RESULT_BACKEND", f"{base}/1")
        monkeypatch.setenv("STATE_URL", f"{base}/2")
        code, items, text = check(capsys)
    finally:
        server.cleanup()
    assert code == 0, text
    assert [items[r] for r in ("broker", "result backend", "cache", "state")] == ["ok"] * 4
    assert password not in text and "p%2F%23" not in text  # shown redacted
