"""One typed settings object, read from the environment once at start-up.

Every variable of docs/interface.md section 2 lives here. A bad value raises ``ConfigError`` with
one line naming the variable, so start-up fails loudly instead of a worker misbehaving later.

``Settings.from_env`` also refuses combinations that would break at-least-once delivery
(``check_limits``; the README's configuration table lists each), derived from the retry
bounds in ``contact_lookup.model.retry``:

- ``VISIBILITY_TIMEOUT`` must be above ``RETRY_MAX_DELAY``, the longest countdown a job can
  schedule: the Redis transport delivers a message again once it has been reserved for the
  visibility timeout, so a shorter one runs a delayed retry early, and more than once
  (Celery docs, "Using Redis: Visibility timeout").
- ``RESULT_EXPIRES`` must cover the retry horizon (``retry.horizon_s``) plus the visibility
  timeout: a redelivered job finds its finished twin through the stored result.
- ``CALL_POP_DEADLINE`` must be below ``VISIBILITY_TIMEOUT``, or a call pop held by a worker
  that died comes back only after nobody can use it.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from urllib.parse import quote, urlsplit, urlunsplit

from contact_lookup.model import retry
from contact_lookup.model.errors import ConfigError
from contact_lookup.model.redaction import redact_url
from contact_lookup.redis_urls import parse_sentinel

DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/0"


def _url(env: Mapping[str, str], name: str, default: str, schemes: tuple[str, ...]) -> str:
    value = env.get(name, "").strip() or default
    scheme = urlsplit(value).scheme
    if scheme not in schemes:
        raise ConfigError(
            f"{name}={redact_url(value)!r} must be a URL with scheme {' or '.join(schemes)}"
        )
    if scheme == "sentinel":
        parse_sentinel(value, name)  # ConfigError naming the variable when incomplete
    if scheme in ("redis", "rediss"):
        # redis-py would silently use database 0 for a path it cannot read
        db = urlsplit(value).path.strip("/")
        if db and not (db.isascii() and db.isdigit()):
            raise ConfigError(
                f"{name}={redact_url(value)!r}: the database (the URL's path) must be a number "
                f"such as /0, not {db!r}"
            )
    return value


def _number(env: Mapping[str, str], name: str, default: float, *, minimum: float) -> float:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ConfigError(f"{name}={raw!r} is not a number") from None
    if value < minimum:
        raise ConfigError(f"{name}={raw!r} must be at least {minimum:g}")
    return value


def _choice(env: Mapping[str, str], name: str, default: str, choices: tuple[str, ...]) -> str:
    value = env.get(name, "").strip() or default
    if value not in choices:
        raise ConfigError(f"{name}={value!r} must be one of {', '.join(choices)}")
    return value


# sentinel://: Redis Sentinel, the master found by name (contact_lookup/redis_urls.py).
REDIS_SCHEMES = ("redis", "rediss", "unix", "sentinel")
# Secrets read from the environment that must not be a tutorial's placeholder.
DEPLOYMENT_SECRETS = (
    "REDIS_PASSWORD",
    "RC_VERIFICATION_TOKEN",
    "FLOWER_BASIC_AUTH",
    "METRICS_BASIC_AUTH",
)


def with_password(url: str, password: str | None) -> str:
    """``url`` with ``password`` as its userinfo password, percent-encoded (RFC 3986 section
    3.2.1), when it is a redis/rediss URL that names none; other URLs unchanged.

    So a deployment passes ``REDIS_PASSWORD`` on its own and URLs without it: a generated
    password holding ``/``, ``#``, ``@`` or ``:`` can never break a URL (redis-py and kombu
    percent-decode the password they parse).

    A ``sentinel://`` URL gets it on its first part, where the master's password goes
    (contact_lookup/redis_urls.py); the sentinels themselves are asked without one.
    """
    parts = urlsplit(url)
    if password and parts.scheme == "sentinel":
        head, mark, query = url.partition("?")
        first, sep, others = head.partition(";")
        first = with_password("redis" + first.removeprefix("sentinel"), password)
        return "sentinel" + first.removeprefix("redis") + sep + others + mark + query
    if not password or parts.scheme not in ("redis", "rediss") or parts.password is not None:
        return url
    host = parts.netloc.rpartition("@")[2]
    user = quote(parts.username or "", safe="")
    netloc = f"{user}:{quote(password, safe='')}@{host}"
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))


def _deployment_secrets(env: Mapping[str, str]) -> None:
    from contact_lookup.preflight import placeholder_problem

    for name in DEPLOYMENT_SECRETS:
        value = env.get(name, "")
        problem = placeholder_problem(name, value) if value else None
        if problem:
            raise ConfigError(problem)


@dataclass(frozen=True)
class Settings:
    redis_url: str = DEFAULT_REDIS_URL
    broker_url: str = DEFAULT_REDIS_URL
    result_backend: str = DEFAULT_REDIS_URL
    cache_url: str = DEFAULT_REDIS_URL
    # Coordination state that must never be evicted: the shared rate-limit buckets, the
    # coalescing keys, the webhook's dedupe keys, the call-pop channel and the OAuth token
    # store. Its Redis must run ``maxmemory-policy noeviction`` (checked at start-up by
    # ``contact_lookup.compose.check_state_redis``); the contact cache (CACHE_URL) may evict.
    state_url: str = DEFAULT_REDIS_URL
    config_path: str = "./contact-lookup.toml"
    # Longer than any retry countdown the tasks use (they cap at MAX_RETRY_DELAY_S), so a
    # delayed retry is never redelivered early; short enough that a job held by a dead worker
    # comes back within minutes rather than the Redis transport's default hour.
    visibility_timeout_s: float = 600.0
    call_pop_deadline_s: float = 20.0
    log_format: str = "text"
    cache_ttl_s: float = 86400.0
    result_expires_s: float = 86400.0
    http_timeout_s: float = 10.0
    # "window": a deferred batch job wakes spread after the limiter's wait (tasks/backoff.py);
    # "none": the limiter's exact wait, as short as it allows (a stress setting for tests).
    deferral_spread: str = "window"
    # "on": a worker probes each connection's credentials with one CRM search at start and
    # refuses to start when a CRM rejects them (worker.checks); "off" skips the probe (the
    # test harness, whose fake CRMs count requests; see tests/processes.py).
    startup_crm_probe: bool = True
    # Telephony events older than this by their eventTime are stale (README "Event rules").
    event_max_age_s: float = 21600.0
    # The longest countdown a job may schedule (retries and limiter deferrals are capped at it).
    retry_max_delay_s: float = retry.DEFAULT_MAX_DELAY_S
    rc_verification_token: str | None = field(default=None, repr=False)
    # user:password for the webhook's /metrics (HTTP basic auth); None: no auth asked.
    metrics_basic_auth: str | None = field(default=None, repr=False)
    # Fernet keys (comma-separated, first encrypts) for the OAuth token store.
    token_encryption_key: str | None = field(default=None, repr=False)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if env is None else env
        _deployment_secrets(env)
        password = env.get("REDIS_PASSWORD") or None

        def url(name: str, default: str, schemes: tuple[str, ...] = REDIS_SCHEMES) -> str:
            return with_password(_url(env, name, default, schemes), password)

        redis_url = url("REDIS_URL", DEFAULT_REDIS_URL)
        return cls(
            redis_url=redis_url,
            broker_url=url("BROKER_URL", redis_url, (*REDIS_SCHEMES, "amqp", "amqps")),
            result_backend=url("RESULT_BACKEND", redis_url),
            cache_url=url("CACHE_URL", redis_url),
            state_url=url("STATE_URL", redis_url),
            config_path=env.get("CONTACT_LOOKUP_CONFIG", "").strip() or "./contact-lookup.toml",
            visibility_timeout_s=_number(env, "VISIBILITY_TIMEOUT", 600.0, minimum=1),
            call_pop_deadline_s=_number(env, "CALL_POP_DEADLINE", 20.0, minimum=1),
            log_format=_choice(env, "LOG_FORMAT", "text", ("text", "json")),
            cache_ttl_s=_number(env, "CACHE_TTL", 86400.0, minimum=1),
            result_expires_s=_number(env, "RESULT_EXPIRES", 86400.0, minimum=60),
            http_timeout_s=_number(env, "CRM_HTTP_TIMEOUT", 10.0, minimum=0.1),
            deferral_spread=_choice(env, "DEFERRAL_SPREAD", "window", ("window", "none")),
            startup_crm_probe=_choice(env, "STARTUP_CRM_PROBE", "on", ("on", "off")) == "on",
            event_max_age_s=_number(env, "EVENT_MAX_AGE", 21600.0, minimum=1),
            retry_max_delay_s=_number(env, "RETRY_MAX_DELAY", retry.DEFAULT_MAX_DELAY_S, minimum=1),
            rc_verification_token=env.get("RC_VERIFICATION_TOKEN") or None,
            metrics_basic_auth=env.get("METRICS_BASIC_AUTH") or None,
            token_encryption_key=env.get("TOKEN_ENCRYPTION_KEY", "").strip() or None,
        ).check_limits()

    @property
    def result_horizon_s(self) -> float:
        """How long a job's result must be kept: its retry horizon plus one redelivery."""
        return retry.horizon_s(self.retry_max_delay_s) + self.visibility_timeout_s

    def check_limits(self) -> Settings:
        """Self, or ConfigError naming the setting and the limit it breaks (module docstring)."""
        if self.visibility_timeout_s <= self.retry_max_delay_s:
            raise ConfigError(
                f"VISIBILITY_TIMEOUT={self.visibility_timeout_s:g} must be above "
                f"RETRY_MAX_DELAY={self.retry_max_delay_s:g} s, the longest countdown a job "
                "can schedule (else a delayed retry is delivered again before it is due)"
            )
        if self.call_pop_deadline_s >= self.visibility_timeout_s:
            raise ConfigError(
                f"CALL_POP_DEADLINE={self.call_pop_deadline_s:g} must be below "
                f"VISIBILITY_TIMEOUT={self.visibility_timeout_s:g} s"
            )
        if self.result_expires_s < self.result_horizon_s:
            raise ConfigError(
                f"RESULT_EXPIRES={self.result_expires_s:g} must be at least "
                f"{self.result_horizon_s:g} s: the retry horizon ({retry.MAX_DEFERRALS} "
                f"deferrals + {max(retry.MAX_RETRIES.values())} retries x RETRY_MAX_DELAY="
                f"{self.retry_max_delay_s:g} s) plus VISIBILITY_TIMEOUT (a redelivered job "
                "reads its stored result)"
            )
        return self
