"""The deployment checks, one implementation for ``contact-lookup check`` (producers/check.py
prints them) and for a worker's start (``worker.startup_checks`` acts on them).

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

Each failed line says whether it is ``fatal`` to a starting worker. Fatal: a bad
environment, connections file or secret; a broker, result backend or Redis that answers but
refuses our password or may evict keys; a CRM that rejects the credentials. Not fatal (the
worker logs a warning and starts): a Redis or broker that does not answer yet (Celery keeps
reconnecting; a deployment often starts the worker first) and a CRM that cannot be reached
or refuses for another reason (a CRM briefly down must not stop the call pops of the others),
and any probe failure of an OAuth connection (``auth = "oauth2"``/``"jwt-bearer"``: its
grants are made and renewed at run time, some per extension only). The probe builds its
connector the way lookups do (``Runtime.connectors``: the token store for OAuth connections)
and sends one request outside the shared rate-limit budget.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
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
from contact_lookup.settings import Settings

# North American fictional range (NANPA: 555-0100 to 555-0199 are for fiction).
PROBE_NUMBER = "+12025550147"
MUST_NOT_EVICT = ("broker", "result backend", "state")
_UNKNOWN_POLICY = "unknown (CONFIG GET refused)"


@dataclass
class Line:
    ok: bool
    item: str
    detail: str
    fatal: bool = True  # when not ok: a starting worker refuses (True) or warns (False)

    def text(self) -> str:
        return f"{'ok  ' if self.ok else 'FAIL'} {self.item}: {self.detail}"


def redis_line(role: str, url: str) -> Line:
    shown = redact_url(url)
    client = redis.Redis.from_url(url, socket_timeout=3, socket_connect_timeout=3)
    try:
        client.ping()
        try:
            policy = str(client.config_get("maxmemory-policy").get("maxmemory-policy", "?"))
        except redis.ResponseError:  # CONFIG disabled (managed Redis)
            policy = _UNKNOWN_POLICY
    except (redis.AuthenticationError, redis.ResponseError) as exc:  # it answered: refused us
        return Line(False, role, f"{shown} refused the connection ({type(exc).__name__})")
    except redis.RedisError as exc:  # no answer: may be starting
        return Line(False, role, f"{shown} unreachable ({type(exc).__name__})", fatal=False)
    finally:
        client.close()
    if role in MUST_NOT_EVICT and policy not in ("noeviction", _UNKNOWN_POLICY):
        return Line(
            False, role, f"{shown} maxmemory-policy {policy}: it may evict keys; set noeviction"
        )
    return Line(True, role, f"{shown} answers, maxmemory-policy {policy}")


def broker_line(url: str) -> Line:
    if urlsplit(url).scheme in ("redis", "rediss", "unix"):
        return redis_line("broker", url)
    from kombu import Connection

    try:
        with Connection(url, connect_timeout=3) as conn:
            conn.ensure_connection(max_retries=1, timeout=3)
    except Exception as exc:  # kombu raises transport-specific errors here
        refused = "ACCESS_REFUSED" in str(exc) or "AccessRefused" in type(exc).__name__
        detail = "refused our credentials" if refused else "unreachable"
        return Line(
            False, "broker", f"{redact_url(url)} {detail} ({type(exc).__name__})", fatal=refused
        )
    return Line(True, "broker", f"{redact_url(url)} answers")


def probe_line(name: str, search: Callable[[], object]) -> Line:
    item = f"connection {name}"
    try:
        search()
    except AuthRejected:
        return Line(False, item, "the CRM rejected the credentials: reconnect the CRM")
    except CRMUnavailable as exc:
        return Line(False, item, f"the CRM could not be reached: {exc.user_message()}", False)
    except RateLimited:
        return Line(True, item, "credentials accepted (the CRM is rate limiting right now)")
    except BadQuery:
        return Line(True, item, "credentials accepted (the CRM refused the probe query)")
    except ContactLookupError as exc:
        return Line(False, item, exc.user_message(), fatal=False)
    return Line(True, item, "the CRM answered a probe search")


def environment() -> tuple[Settings | None, Line]:
    try:
        settings = Settings.from_env()
    except ConfigError as exc:
        return None, Line(False, "environment", str(exc))
    return settings, Line(True, "environment", "every variable is valid")


def lines(settings: Settings, *, probe: bool = True) -> Iterator[Line]:
    """Every item after ``environment``, in order; ``probe=False`` skips the CRM probes."""
    from contact_lookup.compose import load_checked_config
    from contact_lookup.preflight import secret_variables, variable_problem

    config = None
    try:
        config = load_checked_config(settings.config_path, settings)
        count = len(config.connections)
        yield Line(True, "connections file", f"{settings.config_path}: {count} connection(s)")
    except ConfigError as exc:
        yield Line(False, "connections file", str(exc))
    unfit: set[str] = set()
    if config is not None:
        for name, variables in secret_variables(config).items():
            for var in variables:
                problem = variable_problem(var)
                if problem:
                    unfit.add(name)
                yield Line(problem is None, f"secret {var}", problem or "set, fit for a header")
    yield broker_line(settings.broker_url)
    yield redis_line("result backend", settings.result_backend)
    yield redis_line("cache", settings.cache_url)
    yield redis_line("state", settings.state_url)
    if config is None or not probe:
        return
    from contact_lookup.compose import Runtime

    runtime = Runtime(settings)  # connectors built as for lookups (token store included)

    def one(name: str) -> Line:
        connection = config.connections[name]
        if name in unfit:
            return Line(False, f"connection {name}", "not probed: a secret is missing")
        try:
            connector = runtime.connectors.build(connection)
            line = probe_line(name, lambda: connector.search(PROBE_NUMBER))
        except ContactLookupError as exc:  # the token store's own refusals included
            line = Line(False, f"connection {name}", exc.user_message())
        if connection.uses_token_store and not line.ok:
            # OAuth grants are made and renewed at run time (``contact-lookup auth``), some
            # per extension only: one missing or stale grant must not stop a worker.
            line.detail += " (an OAuth connection: see `contact-lookup auth status`)"
            line.fatal = False
        return line

    names = list(config.connections)
    with ThreadPoolExecutor(max_workers=max(1, min(8, len(names)))) as pool:
        yield from pool.map(one, names)  # concurrently: a slow CRM does not delay the others
