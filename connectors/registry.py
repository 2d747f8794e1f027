"""Builds the connector for a connection: its class, secret, pooled HTTP session and proxy.

Each CRM lives in ``connectors/<crm>.py`` and exposes ``CONNECTOR``. Sessions are kept per
thread and per connection, so every worker thread reuses its keep-alive connections and no
session is shared across threads (requests.Session is not thread-safe).
"""

from __future__ import annotations

import importlib
import os
import threading
from collections.abc import Mapping
from typing import Any

import requests
from requests.adapters import HTTPAdapter

from connectors.base import Connector
from lookup.config import Connection
from lookup.errors import ConfigError
from lookup.trace import DebugTrace

MODULES = {
    "json": "json_file",
    "clio": "clio",
    "pipedrive": "pipedrive",
    "insightly": "insightly",
    "bullhorn": "bullhorn",
    "hubspot": "hubspot",
    "salesforce": "salesforce",
}


_REGISTERED: dict[str, type[Connector]] = {}


def register(crm: str, cls: type[Connector]) -> None:
    """Add a connector class under a crm name (tests, or a plugin outside this package)."""
    _REGISTERED[crm] = cls


def connector_class(crm: str) -> type[Connector]:
    if crm in _REGISTERED:
        return _REGISTERED[crm]
    module = MODULES.get(crm)
    if module is None:
        raise ConfigError(f"unknown crm {crm!r} (known: {', '.join(sorted(MODULES))})")
    cls: type[Connector] = importlib.import_module(f"connectors.{module}").CONNECTOR
    return cls


class ConnectorFactory:
    def __init__(
        self, *, timeout_s: float = 10.0, env: Mapping[str, str] | None = None, pool_size: int = 10
    ) -> None:
        self.timeout_s = timeout_s
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

    def check(self, connection: Connection) -> None:
        """Fail early (ConfigError) for an unknown crm or a missing secret."""
        connector_class(connection.crm)
        connection.secret(self.env)

    def build(self, connection: Connection, trace: DebugTrace | None = None) -> Connector:
        cls = connector_class(connection.crm)
        with self._shared_lock:
            shared = self._shared.setdefault(connection.name, {})
        return cls(
            connection,
            secret=connection.secret(self.env),
            session=self.session(connection),
            timeout_s=self.timeout_s,
            trace=trace,
            shared=shared,
        )
