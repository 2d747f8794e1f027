"""The deployment checks, one implementation for ``contact-lookup check`` (producers/check.py
prints them) and for a worker's start (``worker.startup_checks`` acts on them).

Items, in order (a failure does not stop the later ones):

1. ``environment``: ``Settings.from_env`` (every variable of the README's table);
2. ``connections file``: parsed and checked the way every command loads it
   (``contact_lookup.compose.load_checked_config``);
3. ``secret <VAR>``: each connection's secrets (``token_env``, an OAuth connection's
   ``client_id_env`` / ``client_secret_env`` / ``private_key_env``, each ``*_env`` option)
   set, not a placeholder and fit for an HTTP header (``contact_lookup.preflight``), named by
   variable, never shown; then ``secret RC_VERIFICATION_TOKEN`` when it is set (the webhook
   verifies deliveries with it only then), by the webhook's own start-up rule
   (``preflight.webhook_token_problem``): not fatal to a worker, which never uses it;
4. ``broker``, ``result backend``, ``cache``, ``state``: each answers a ping; for Redis the
   ``maxmemory-policy`` is shown, and must be ``noeviction`` for the broker, the result
   backend and the state role (an evicted job, result or limiter bucket is lost work; Redis
   documentation, "Key eviction"). The cache may evict (``allkeys-lru`` recommended). A
   database index the server does not have (``/99`` on a Redis with the default 16) is
   named as such;
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
and pays each request it sends from the connection's shared rate-limit budget
(``RateLimiter``, with the priority of a batch job, so the call-pop reserve is left alone),
as any lookup does; a budget used up right now skips the probe (ok, "not probed"), and
the CRM's own "rate limited" holds every worker off as a lookup's would.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TypeVar
from urllib.parse import urlsplit

import redis

from contact_lookup.connectors.base import UNMETERED, Connector
from contact_lookup.core.guard import SharedBudget, crm_wait_s
from contact_lookup.core.ratelimit import RateLimiter, limit_for
from contact_lookup.model.config import Connection
from contact_lookup.model.errors import (
    AuthRejected,
    BadQuery,
    ConfigError,
    ContactLookupError,
    CRMUnavailable,
    RateLimited,
)
from contact_lookup.model.redaction import redact_url
from contact_lookup.redis_urls import redis_client
from contact_lookup.settings import Settings

# North American fictional range (NANPA: 555-0100 to 555-0199 are for fiction).
PROBE_NUMBER = "+12025550147"
T = TypeVar("T")
MUST_NOT_EVICT = ("broker", "result backend", "state")
_UNKNOWN_POLICY = "unknown (CONFIG GET refused)"
# What Redis answers to SELECT of a database it does not have, and redis-py's own wording.
_NO_SUCH_DB = ("DB index is out of range", "Invalid Database")


@dataclass
class Line:
    ok: bool
    item: str
    detail: str
    fatal: bool = True  # when not ok: a starting worker refuses (True) or warns (False)

    def text(self) -> str:
        return f"{'ok  ' if self.ok else 'FAIL'} {self.item}: {self.detail}"


def _db_of(url: str) -> str:
    """The database index a Redis URL names (its path; a sentinel URL's first part)."""
    return urlsplit(url.partition(";")[0]).path.strip("/") or "0"


def redis_line(role: str, url: str) -> Line:
    shown = redact_url(url)
    client = redis_client(url)
    try:
        client.ping()
        try:
            policy = str(client.config_get("maxmemory-policy").get("maxmemory-policy", "?"))
        except redis.ResponseError:  # CONFIG disabled (managed Redis)
            policy = _UNKNOWN_POLICY
    except redis.RedisError as exc:
        if any(text in str(exc) for text in _NO_SUCH_DB):  # SELECT refused: it answered
            return Line(
                False,
                role,
                f"{shown}: database {_db_of(url)} does not exist on this server (Redis has "
                "16, numbered 0-15, unless its `databases` setting says more); use one it has",
            )
        if isinstance(exc, redis.AuthenticationError | redis.ResponseError):  # refused us
            return Line(False, role, f"{shown} refused the connection ({type(exc).__name__})")
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


class NotProbed(Exception):
    """The probe sent nothing: its connection's shared rate budget is used up for now."""

    def __init__(self, wait_s: float | None) -> None:
        super().__init__(wait_s)
        self.wait_s = wait_s


def paid(
    limiter: RateLimiter, connection: Connection, connector: Connector, send: Callable[[], T]
) -> T:
    """``send()`` (the probe's requests) with each request paid from ``connection``'s shared
    budget, as a lookup's are (``core.guard.SharedBudget``), at a batch job's priority so the
    call-pop reserve is left alone. ``NotProbed`` when the budget cannot pay the first
    request; the CRM's own "rate limited" holds every worker off (``RateLimiter.hold_off``)."""
    limit = limit_for(connection, connector.default_rate_limit)
    if limit is None:  # not rate limited (json, a crm without a published limit)
        return send()
    budget = SharedBudget(limiter, connection, limit, priority=False)
    connector.budget = budget
    try:
        return send()
    except RateLimited as exc:
        if exc.status_code is not None or exc.rate_limit is not None:  # the CRM said so
            limiter.hold_off(connection, crm_wait_s(exc))
            raise
        if budget.paid == 0:
            raise NotProbed(exc.retry_after_s) from None
        raise  # a later request of the probe: the first was answered
    finally:
        connector.budget = UNMETERED


def probe_line(name: str, search: Callable[[], object]) -> Line:
    item = f"connection {name}"
    try:
        search()
    except NotProbed as exc:
        wait = f" for {exc.wait_s:g} s" if exc.wait_s else ""
        return Line(
            True,
            item,
            f"not probed: its shared rate budget is used up{wait} (the probe is paid from it "
            "like any request); lookups will show the credentials",
        )
    except redis.RedisError as exc:  # the state Redis holding the budget
        return Line(
            False,
            item,
            f"not probed: its rate budget's Redis is unreachable ({type(exc).__name__})",
            False,
        )
    except AuthRejected:
        return Line(False, item, "the CRM rejected the credentials: reconnect the CRM")
    except CRMUnavailable as exc:
        return Line(False, item, f"the CRM could not be reached: {exc.user_message()}", False)
    except RateLimited as exc:
        if exc.status_code is None and exc.rate_limit is None:  # our budget, after an answer
            return Line(True, item, "the CRM answered a probe search")
        return Line(True, item, "credentials accepted (the CRM is rate limiting right now)")
    except BadQuery:
        return Line(True, item, "credentials accepted (the CRM refused the probe query)")
    except ContactLookupError as exc:
        return Line(False, item, exc.user_message(), fatal=False)
    return Line(True, item, "the CRM answered a probe search")


def _probe_search(connector: Connector) -> Callable[[], object]:
    return lambda: connector.search(PROBE_NUMBER)


def environment() -> tuple[Settings | None, Line]:
    try:
        settings = Settings.from_env()
    except ConfigError as exc:
        return None, Line(False, "environment", str(exc))
    return settings, Line(True, "environment", "every variable is valid")


def lines(settings: Settings, *, probe: bool = True) -> Iterator[Line]:
    """Every item after ``environment``, in order; ``probe=False`` skips the CRM probes."""
    from contact_lookup.compose import load_checked_config
    from contact_lookup.preflight import (
        WEBHOOK_TOKEN,
        secret_variables,
        variable_problem,
        webhook_token_problem,
    )

    config = None
    try:
        config = load_checked_config(settings.config_path, settings)
        count = len(config.connections)
        yield Line(True, "connections file", f"{settings.config_path}: {count} connection(s)")
    except ConfigError as exc:
        yield Line(False, "connections file", str(exc))
    unfit: set[str] = set()
    if config is not None:
        for name, secrets in secret_variables(config).items():
            for secret in secrets:
                problem = variable_problem(secret.var, header=secret.header)
                if problem:
                    unfit.add(name)
                fine = "set, fit for a header" if secret.header else "set"
                yield Line(problem is None, f"secret {secret.var}", problem or fine)
    if settings.rc_verification_token:  # the webhook verifies deliveries with it (only) when set
        problem = webhook_token_problem(settings.rc_verification_token)
        fine = "set, fit for a header (the webhook's Verification-Token)"
        yield Line(problem is None, f"secret {WEBHOOK_TOKEN}", problem or fine, fatal=False)
    yield broker_line(settings.broker_url)
    yield redis_line("result backend", settings.result_backend)
    yield redis_line("cache", settings.cache_url)
    yield redis_line("state", settings.state_url)
    if config is None or not probe:
        return
    from contact_lookup.compose import Runtime

    runtime = Runtime(settings)  # connectors built as for lookups (token store included)
    limiter = RateLimiter(runtime.state_redis)  # the probe is paid like any request

    def one(name: str) -> Line:
        connection = config.connections[name]
        if name in unfit:
            return Line(False, f"connection {name}", "not probed: a secret is missing")
        try:
            connector = runtime.connectors.build(connection)
            line = probe_line(
                name, lambda: paid(limiter, connection, connector, _probe_search(connector))
            )
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
