"""The product's connector contract, run against the Acme connector and its simulator.

This is all a plugin package writes to get the contract the built-in connectors pass: a
``harness`` fixture. Two ways, both run here:

- ``TestAcme``: a simulator object started in this process, seeded with ``SEED``;
- ``TestAcmeFromUrl``: only the connector class and the URL of a simulator running anywhere
  (``ACME_SIM_URL``, e.g. ``python -m crmsim acme``; else one started here, known to the
  contract by its URL alone). The contract seeds it and forces its faults through the
  control protocol (docs/connectors.md, "The contract's control protocol").
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from contact_lookup_acme import AcmeConnector

from contact_lookup.testing.contract import HANG_S, SECRET, SEED, ConnectorContract, Harness
from crmsim.acme import AcmeSimulator


class TestAcme(ConnectorContract):
    @pytest.fixture
    def harness(self, tmp_path: Path) -> Iterator[Harness]:
        sim = AcmeSimulator(SEED, token=SECRET, hang_s=HANG_S).start()
        yield Harness("acme", sim.connection(), sim.env(), tmp_path, sim)
        sim.stop()


@pytest.fixture(scope="module")
def acme_url() -> Iterator[str]:
    if os.environ.get("ACME_SIM_URL"):
        yield os.environ["ACME_SIM_URL"]
        return
    sim = AcmeSimulator().start()  # empty: the contract seeds it over HTTP
    yield sim.url
    sim.stop()


class TestAcmeFromUrl(ConnectorContract):
    @pytest.fixture
    def harness(self, tmp_path: Path, acme_url: str) -> Harness:
        return Harness.from_url(AcmeConnector, acme_url, tmp_path)
