"""The contract harness of the built-in connectors: ``crmsim`` simulators behind the shared one.

``Harness`` and the contract's constants live in ``contact_lookup.testing.contract`` (usable
by plugin packages); this module adds what only this repository has: the list of built-in
CRMs and their ``crmsim`` simulators. Fixtures live in conftest.py.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any

from contact_lookup.model.config import Connection, parse_config
from contact_lookup.testing.contract import (
    CLIENT_TIMEOUT_S,
    CONNECTION,
    HANG_S,
    SECRET,
    SEED,
    Harness,
)
from crmsim.base import Simulator

__all__ = [
    "ALL_CRMS",
    "CLIENT_TIMEOUT_S",
    "CONNECTION",
    "CONTACTS",
    "HANG_S",
    "SECRET",
    "Harness",
    "sim_connection",
    "simulator_class",
]

CONTACTS = SEED
ALL_CRMS = ("json", "clio", "pipedrive", "insightly", "bullhorn", "hubspot", "salesforce")


def simulator_class(crm: str) -> type[Simulator]:
    cls: type[Simulator] = importlib.import_module(f"crmsim.{crm}").SIMULATOR
    return cls


def sim_connection(sim: Simulator, name: str, **options: Any) -> Connection:
    """The connection a connections file would give for ``sim``, plus connector options."""
    table = {**sim.connection(), **options}
    return parse_config({"connections": {name: table}}, Path(".")).connection(name)
