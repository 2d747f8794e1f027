"""The contract harness: one connector under test and the simulator it talks to.

A ``Harness`` builds the ``Connection`` the way production does (``parse_config`` over the
simulator's ``connection()`` table) and connectors through a ``ConnectorFactory`` over the
simulator's ``env()``. Fixtures live in conftest.py; constants here are shared by the tests.
"""

from __future__ import annotations

import importlib
import importlib.util
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import redis

from contact_lookup.connectors.base import Connector, FindOutcome
from contact_lookup.connectors.registry import ConnectorFactory
from contact_lookup.core.cache import ContactCache
from contact_lookup.core.service import LookupService
from contact_lookup.model import phone
from contact_lookup.model.config import Connection, parse_config
from contact_lookup.model.trace import DebugTrace
from crmsim.base import Simulator, WindowState

CONTACTS = Path(__file__).with_name("contacts.json")
ALL_CRMS = ("json", "clio", "pipedrive", "insightly", "bullhorn", "hubspot", "salesforce")
# Distinctive, so that its absence from a trace or a result means something.
SECRET = "ctk-5b1e0f9a2d7c4e83"
CONNECTION = "contract"
CLIENT_TIMEOUT_S = 2.0  # generous for localhost, still fails fast on a hung test
HANG_S = 1.5  # how long the simulator's "timeout" fault holds a request


@dataclass
class Harness:
    """One connector under test, and the simulator it talks to (None for ``json``)."""

    crm: str
    table: dict[str, Any]
    env: dict[str, str]
    base_dir: Path
    sim: Simulator | None = None
    _factory: ConnectorFactory | None = field(default=None, repr=False)

    # ----- building ------------------------------------------------------------------------
    def connection(self, **overrides: Any) -> Connection:
        table = {"rc_account": "contract-account", **self.table, **overrides}
        config = parse_config({"connections": {CONNECTION: table}}, self.base_dir)
        return config.connection(CONNECTION)

    def factory(
        self, *, timeout_s: float = CLIENT_TIMEOUT_S, env: Mapping[str, str] | None = None
    ) -> ConnectorFactory:
        return ConnectorFactory(env=dict(self.env if env is None else env), timeout_s=timeout_s)

    @property
    def default_factory(self) -> ConnectorFactory:
        """One factory per test, so per-connection state (``shared``) lives across lookups."""
        if self._factory is None:
            self._factory = self.factory()
        return self._factory

    def connector(
        self,
        *,
        trace: DebugTrace | None = None,
        factory: ConnectorFactory | None = None,
        **overrides: Any,
    ) -> Connector:
        return (factory or self.default_factory).build(self.connection(**overrides), trace)

    def service(self, client: redis.Redis, **overrides: Any) -> LookupService:
        table = {"rc_account": "contract-account", **self.table, **overrides}
        config = parse_config({"connections": {CONNECTION: table}}, self.base_dir)
        return LookupService(config, ContactCache(client, ttl_s=60), self.default_factory)

    # ----- running -------------------------------------------------------------------------
    def find(
        self,
        number: str,
        formats: str = "",
        *,
        trace: DebugTrace | None = None,
        factory: ConnectorFactory | None = None,
    ) -> FindOutcome:
        """The connector's answer for one number, planned as the service plans it."""
        queries = phone.queries(phone.to_e164(number), formats)
        return self.connector(trace=trace, factory=factory).find(queries)

    # ----- what some tests need ------------------------------------------------------------
    @property
    def vendor(self) -> Simulator:
        if self.sim is None:
            pytest.skip("the json connector reads a file: it has no HTTP, token or rate limit")
        return self.sim

    def wrong_env(self) -> dict[str, str]:
        return {**self.env, self.vendor.token_env: "not-the-token"}

    def require_rate_limit_headers(self) -> None:
        probe = WindowState(
            limit=1, remaining=0, window_s=1.0, reset_at=time.time() + 1, allowed=True
        )
        if not self.vendor.rate_limit_headers(probe):
            pytest.skip(f"{self.crm} documents no rate-limit headers")


def simulator_class(crm: str) -> type[Simulator]:
    cls: type[Simulator] = importlib.import_module(f"crmsim.{crm}").SIMULATOR
    return cls


def sim_connection(sim: Simulator, name: str, **options: Any) -> Connection:
    """The connection a connections file would give for ``sim``, plus connector options."""
    table = {**sim.connection(), **options}
    return parse_config({"connections": {name: table}}, Path(".")).connection(name)
