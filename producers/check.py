"""``contact-lookup check``: is this deployment fit to run? One line per item, exit 1 on any
failure.

Items, in order (a failure does not stop the later ones):

1. ``environment``: ``Settings.from_env`` (every variable of the README's table);
2. ``connections file``: parsed and checked the way every command loads it
   (``contact_lookup.compose.load_checked_config``);
3. ``secret <VAR>``: each connection's secrets set and fit for an HTTP header
   (``contact_lookup.preflight``), named by variable, never shown;
4. ``broker``, ``result backend``, ``cache``, ``state``: each answers a ping; for Redis the
   ``maxmemory-policy`` is shown, and must be ``noeviction`` for the broker, the result
   backend and the state role (an evicted job, result or limiter bucket is lost work; Redis
   documentation, "Key eviction"). The cache may evict (``allkeys-lru`` recommended);
5. ``connection <name>``: one search for a number no one has (``PROBE_NUMBER``, a fictional
   555-01xx number) against the CRM: ok when it answers, FAIL when it rejects the
   credentials or cannot be reached. A probe the CRM refuses as a query (HTTP 400) still
   shows the credentials were accepted.

The same secret check runs when a worker starts (worker.refuse_without_secrets).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TextIO
from urllib.parse import urlsplit

import redis

from contact_lookup.model.errors import (
    AuthRejected,
    BadQuery,
    ConfigError,
    ContactLookupError,
    CRMUnavailable,
    RateLimited,
)
from contact_lookup.model.redaction import redact_url

# North American fictional range (NANPA: 555-0100 to 555-0199 are for fiction).
PROBE_NUMBER = "+12025550147"
MUST_NOT_EVICT = ("broker", "result backend", "state")


@dataclass
class Line:
    ok: bool
    item: str
    detail: str

    def text(self) -> str:
        return f"{'ok  ' if self.ok else 'FAIL'} {self.item}: {self.detail}"


def _redis_line(role: str, url: str) -> Line:
    shown = redact_url(url)
    client = redis.Redis.from_url(url, socket_timeout=3, socket_connect_timeout=3)
    try:
        client.ping()
        try:
            policy = str(client.config_get("maxmemory-policy").get("maxmemory-policy", "?"))
        except redis.ResponseError:  # CONFIG disabled (managed Redis)
            policy = "unknown (CONFIG GET refused)"
    except redis.RedisError as exc:
        return Line(False, role, f"{shown} unreachable ({type(exc).__name__})")
    finally:
        client.close()
    if role in MUST_NOT_EVICT and policy not in ("noeviction", "unknown (CONFIG GET refused)"):
        return Line(
            False,
            role,
            f"{shown} maxmemory-policy {policy}: it may evict keys; set noeviction",
        )
    return Line(True, role, f"{shown} answers, maxmemory-policy {policy}")


def _broker_line(url: str) -> Line:
    if urlsplit(url).scheme in ("redis", "rediss", "unix"):
        return _redis_line("broker", url)
    from kombu import Connection

    try:
        with Connection(url, connect_timeout=3) as conn:
            conn.ensure_connection(max_retries=1, timeout=3)
    except Exception as exc:  # kombu raises transport-specific errors here
        return Line(False, "broker", f"{redact_url(url)} unreachable ({type(exc).__name__})")
    return Line(True, "broker", f"{redact_url(url)} answers")


def _probe(name: str, search: Callable[[], object]) -> Line:
    item = f"connection {name}"
    try:
        search()
    except AuthRejected:
        return Line(False, item, "the CRM rejected the credentials: reconnect the CRM")
    except CRMUnavailable as exc:
        return Line(False, item, f"the CRM could not be reached: {exc.user_message()}")
    except RateLimited:
        return Line(True, item, "credentials accepted (the CRM is rate limiting right now)")
    except BadQuery:
        return Line(True, item, "credentials accepted (the CRM refused the probe query)")
    except ContactLookupError as exc:
        return Line(False, item, exc.user_message())
    return Line(True, item, "the CRM answered a probe search")


def run(out: TextIO) -> int:
    """Print one line per item to ``out``; 0 when every item is ok, else 1."""
    from contact_lookup.compose import load_checked_config
    from contact_lookup.connectors.registry import ConnectorFactory
    from contact_lookup.preflight import secret_variables, variable_problem
    from contact_lookup.settings import Settings

    lines: list[Line] = []

    def emit(line: Line) -> None:
        lines.append(line)
        print(line.text(), file=out, flush=True)

    try:
        settings = Settings.from_env()
    except ConfigError as exc:
        emit(Line(False, "environment", str(exc)))
        return 1
    emit(Line(True, "environment", "every variable is valid"))
    config = None
    try:
        config = load_checked_config(settings.config_path)
        emit(
            Line(
                True,
                "connections file",
                f"{settings.config_path}: {len(config.connections)} connection(s)",
            )
        )
    except ConfigError as exc:
        emit(Line(False, "connections file", str(exc)))
    unfit: set[str] = set()
    if config is not None:
        for name, variables in secret_variables(config).items():
            for var in variables:
                problem = variable_problem(var)
                if problem:
                    unfit.add(name)
                emit(Line(problem is None, f"secret {var}", problem or "set, fit for a header"))
    emit(_broker_line(settings.broker_url))
    emit(_redis_line("result backend", settings.result_backend))
    emit(_redis_line("cache", settings.cache_url))
    emit(_redis_line("state", settings.state_url))
    if config is not None:
        factory = ConnectorFactory(timeout_s=min(settings.http_timeout_s, 10.0))
        for name, conn in config.connections.items():
            if name in unfit:
                emit(Line(False, f"connection {name}", "not probed: a secret is missing"))
                continue
            try:
                connector = factory.build(conn)
            except ContactLookupError as exc:
                emit(Line(False, f"connection {name}", exc.user_message()))
                continue
            emit(_probe(name, lambda c=connector: c.search(PROBE_NUMBER)))  # type: ignore[misc]
    failed = [line for line in lines if not line.ok]
    print(
        f"check: {len(lines) - len(failed)} ok, {len(failed)} failed",
        file=out,
    )
    return 1 if failed else 0
