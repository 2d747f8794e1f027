"""Which connector class serves ``crm = NAME``, and the connector for a connection.

Connector classes are found through the entry-point group ``contact_lookup.connectors``
(name -> ``module:Class``), the standard Python plugin mechanism (PyPA "Entry points
specification"). The built-in CRMs are registered there by this distribution's own
``pyproject.toml``, exactly as a plugin package registers its own: that file is the one list
of CRMs. A connection may also name a class directly, ``crm = "package.module:Class"`` (like
Celery's ``-A module:app``), for a connector that is importable but not packaged.

Sessions are kept per thread and per connection, so every worker thread reuses its
keep-alive connections and no session is shared across threads (requests.Session is not
thread-safe).
"""

from __future__ import annotations

import dataclasses
import difflib
import os
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cache
from importlib.metadata import EntryPoint, entry_points
from typing import Any

import requests
from requests.adapters import HTTPAdapter

from contact_lookup.connectors.base import Connector, CredentialSource
from contact_lookup.model.config import COMMON_KEYS, Config, Connection
from contact_lookup.model.credential import Credential
from contact_lookup.model.errors import ConfigError
from contact_lookup.model.trace import DebugTrace

GROUP = "contact_lookup.connectors"


@dataclass(frozen=True)
class Registered:
    """One entry of the registry: the crm name, where its class comes from, and the class."""

    crm: str
    source: str  # "module:Class" and the distribution that registered it
    cls: type[Connector]


@cache
def _entry_points() -> dict[str, EntryPoint]:
    found: dict[str, EntryPoint] = {}
    for ep in entry_points(group=GROUP):
        found.setdefault(ep.name, ep)
    return found


def known_crms() -> list[str]:
    return sorted(_entry_points())


def connector_class(crm: str) -> type[Connector]:
    """The class registered for ``crm`` (or named ``module:Class``); ConfigError otherwise."""
    ep = _entry_points().get(crm)
    if ep is None and ":" in crm:
        ep = EntryPoint(name=crm, value=crm, group=GROUP)
    if ep is None:
        known = known_crms()
        if not known:
            raise ConfigError(
                "no connectors are registered: install the package (pip install -e .) so its "
                f"entry points ({GROUP}) exist"
            )
        close = difflib.get_close_matches(crm, known, n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        raise ConfigError(f"unknown crm {crm!r} (known: {', '.join(known)}){hint}")
    try:
        cls = ep.load()
    except Exception as exc:  # a broken plugin must name itself, not crash the worker
        raise ConfigError(f"crm {crm!r}: cannot load connector {ep.value}: {exc}") from None
    if not (isinstance(cls, type) and issubclass(cls, Connector)):
        raise ConfigError(f"crm {crm!r}: {ep.value} is not a Connector subclass")
    return cls


def registered() -> list[Registered]:
    """Every registered connector, for ``contact-lookup connectors list``."""
    out = []
    for crm in known_crms():
        ep = _entry_points()[crm]
        dist = ep.dist.name if ep.dist is not None else "?"
        out.append(Registered(crm, f"{ep.value} ({dist})", connector_class(crm)))
    return out


def validate_connection(connection: Connection) -> None:
    """ConfigError when the connection names an unknown crm, an unknown key or a bad option.

    An unknown key names the file's table and key and suggests the closest valid key.
    """
    cls = connector_class(connection.crm)
    valid = sorted({*COMMON_KEYS, *cls.options})
    for key, value in connection.options.items():
        option = cls.options.get(key)
        if option is None:
            close = difflib.get_close_matches(key, valid, n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            raise ConfigError(
                f"[connections.{connection.name}]: unknown key {key!r} for crm "
                f"{connection.crm!r}{hint}"
            )
        option.check(connection.name, key, value)
    cls.check_connection(connection)


def validate_config(config: Config) -> None:
    """``validate_connection`` for every connection of the file."""
    for connection in config.connections.values():
        validate_connection(connection)


class ConnectorFactory:
    """Builds the connector of a connection (``ConnectorSource`` for the core)."""

    def __init__(
        self,
        *,
        timeout_s: float = 10.0,
        env: Mapping[str, str] | None = None,
        pool_size: int = 10,
        credentials: CredentialSource | None = None,
    ) -> None:
        self.timeout_s = timeout_s
        # The token store's manager, for connections with auth = oauth2 / jwt-bearer.
        self.credentials = credentials
        self.env = os.environ if env is None else env
        self.pool_size = pool_size
        self._local = threading.local()
        self._shared: dict[str, dict[str, Any]] = {}
        self._shared_lock = threading.Lock()

    def session(self, connection: Connection) -> requests.Session:
        sessions: dict[str, requests.Session] = self._local.__dict__.setdefault("sessions", {})
        session = sessions.get(connection.name)
        if session is None:
            session = requests.Session()
            adapter = HTTPAdapter(pool_connections=1, pool_maxsize=self.pool_size)
            session.mount("http://", adapter)
            session.mount("https://", adapter)
            session.trust_env = False  # the connection's proxy, not the process environment's
            if connection.proxy:
                session.proxies = {"http": connection.proxy, "https": connection.proxy}
            sessions[connection.name] = session
        return session

    def connector_class(self, connection: Connection) -> type[Connector]:
        return connector_class(connection.crm)

    def check(self, connection: Connection) -> None:
        """Fail early (ConfigError) for an unknown crm, a bad option or a missing secret."""
        validate_connection(connection)
        connection.secret(self.env)

    def build(
        self,
        connection: Connection,
        trace: DebugTrace | None = None,
        *,
        user: str | None = None,
        credential: Credential | None = None,
    ) -> Connector:
        """The connector for one lookup. A token-store connection gets a credential the
        credential source has just made sure is fresh (``user``: whose grant, see README
        "Per-user tokens"); the API host the vendor named replaces ``base_url``."""
        cls = self.connector_class(connection)
        with self._shared_lock:
            shared = self._shared.setdefault(connection.name, {})
        secret = connection.secret(self.env)
        target = connection
        if connection.uses_token_store:
            if credential is None:
                if self.credentials is None:
                    raise ConfigError(
                        f"connection {connection.name!r}: auth = {connection.auth!r} needs the "
                        "token store (TOKEN_ENCRYPTION_KEY and STATE_URL)"
                    )
                credential = self.credentials.get(connection, user)
            secret = credential.access_token
            if credential.base_url:
                target = dataclasses.replace(connection, base_url=credential.base_url)
        return cls(
            target,
            secret=secret,
            session=self.session(connection),
            timeout_s=self.timeout_s,
            trace=trace,
            shared=shared,
        )

    def renew(
        self,
        connection: Connection,
        connector: Connector,
        trace: DebugTrace | None = None,
        user: str | None = None,
    ) -> Connector | None:
        """After the CRM answered 401 to ``connector``: one with a renewed credential, or None
        for a static token (nothing fresher to try)."""
        if not connection.uses_token_store or self.credentials is None:
            return None
        credential = self.credentials.renew(connection, connector.secret, user)
        return self.build(connection, trace, user=user, credential=credential)
