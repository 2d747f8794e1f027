"""The product's connector contract, run against the Acme connector and its simulator.

This is all a plugin package writes to get the contract the built-in connectors pass: a
``harness`` fixture that starts its simulator seeded with ``SEED``.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from contact_lookup.testing.contract import HANG_S, SECRET, SEED, ConnectorContract, Harness
from crmsim.acme import AcmeSimulator


class TestAcme(ConnectorContract):
    @pytest.fixture
    def harness(self, tmp_path: Path) -> Iterator[Harness]:
        sim = AcmeSimulator(SEED, token=SECRET, hang_s=HANG_S).start()
        yield Harness("acme", sim.connection(), sim.env(), tmp_path, sim)
        sim.stop()
