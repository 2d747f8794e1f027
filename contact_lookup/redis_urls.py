"""Redis URLs of every role, Redis Sentinel included: one client factory, and the form Celery
and kombu want.

A Sentinel URL names the sentinels (not the master) in kombu's and Celery's own form,
``;``-separated, and the master's name as a query parameter::

    sentinel://[:password@]host1:26379/DB;sentinel://host2:26379;sentinel://host3:26379?master_name=NAME

The password and ``DB`` (the database on the master) go on the first part only, where Celery's
Sentinel result backend and kombu read them; a database or password on a later part is
refused rather than silently ignored. Sources: kombu's Redis transport, "Sentinel"
(https://docs.celeryq.dev/projects/kombu/en/stable/reference/kombu.transport.redis.html) and
Celery's "Redis backend settings: Sentinel"
(https://docs.celeryq.dev/en/stable/userguide/configuration.html#redis-backend-settings),
which take the master name as the transport option ``master_name``; redis-py's
``redis.sentinel.Sentinel.master_for`` for the clients, which ask the sentinels for the current
master on every new connection, so a client follows a failover by itself.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import parse_qs, unquote, urlsplit

import redis
from redis.sentinel import Sentinel

from contact_lookup.model.errors import ConfigError

TIMEOUTS = {"socket_timeout": 5, "socket_connect_timeout": 5}


@dataclass(frozen=True)
class SentinelURL:
    """A parsed ``sentinel://`` URL: sentinel addresses, master name, database, password."""

    sentinels: tuple[tuple[str, int], ...]
    master_name: str
    db: int
    password: str | None
    celery_url: str  # the URL without its query, as Celery and kombu take it


def is_sentinel(url: str) -> bool:
    return urlsplit(url).scheme == "sentinel"


def parse_sentinel(url: str, variable: str = "the URL") -> SentinelURL:
    """Parse a Sentinel URL; ``ConfigError`` naming ``variable`` when it is incomplete."""
    head, _, query = url.partition("?")
    master = (parse_qs(query).get("master_name") or [""])[0]
    if not master:
        raise ConfigError(f"{variable}: a sentinel:// URL needs ?master_name=NAME")
    sentinels: list[tuple[str, int]] = []
    password: str | None = None
    db = 0
    for index, part in enumerate(head.split(";")):
        parts = urlsplit(part.strip())
        if parts.scheme != "sentinel" or not parts.hostname:
            raise ConfigError(f"{variable}: every ';'-separated part must be sentinel://host:port")
        sentinels.append((parts.hostname, parts.port or 26379))
        path = parts.path.strip("/")
        if index and (path or parts.password):
            raise ConfigError(
                f"{variable}: put the database and password on the first sentinel:// part only"
            )
        if index == 0:
            # percent-encoded in the URL (RFC 3986 userinfo), as kombu and Celery decode it
            password = None if parts.password is None else unquote(parts.password)
            if path and not path.isdigit():
                raise ConfigError(f"{variable}: the database must be a number")
            db = int(path or 0)
    return SentinelURL(tuple(sentinels), master, db, password, head)


def redis_client(url: str) -> redis.Redis:
    """A client for one Redis role: bounded timeouts, a health check on idle connections;
    on a ``sentinel://`` URL, the current master, followed through failovers."""
    if not is_sentinel(url):
        return redis.Redis.from_url(url, health_check_interval=30, **TIMEOUTS)
    parsed = parse_sentinel(url)
    sentinel = Sentinel(list(parsed.sentinels), sentinel_kwargs=dict(TIMEOUTS), **TIMEOUTS)
    client: redis.Redis = sentinel.master_for(
        parsed.master_name,
        db=parsed.db,
        password=parsed.password,
        health_check_interval=30,
        **TIMEOUTS,
    )
    return client


def celery_url_and_options(url: str) -> tuple[str, dict[str, str]]:
    """The URL Celery/kombu take, and the transport options it needs (``master_name``)."""
    if not is_sentinel(url):
        return url, {}
    parsed = parse_sentinel(url)
    return parsed.celery_url, {"master_name": parsed.master_name}
