"""The contract's control protocol (crmsim/control.py) on every simulator of this repository:
what lets the contract run from a bare URL (``Harness.from_url``) against the built-in
vendors, the ``rest`` templates' CRMs and the example plugin's.

Each simulator starts empty and with a token of its own; the contract, knowing only its URL,
seeds the contacts and the token, then forces a 503, a 429 with ``Retry-After`` and a rate
limit, and reads the counters. The whole contract from a URL runs in test_rest_templates.py
(Capsule) and tests/plugins (Acme in its own process).
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any

import pytest
import requests

from contact_lookup.model.errors import CRMUnavailable, RateLimited
from contact_lookup.testing.contract import SHARED, Harness, names
from crmsim import NOT_BUILT_IN, VENDORS
from crmsim.base import Simulator
from tests.contract.test_rest_templates import template

SIMULATORS = tuple(v for v in (*VENDORS, *NOT_BUILT_IN) if v != "acme")  # acme: tests/plugins


def start(vendor: str) -> Simulator:
    cls: type[Simulator] = importlib.import_module(f"crmsim.{vendor}").SIMULATOR
    return cls(token="the-simulators-own").start()


def from_url(vendor: str, sim: Simulator, tmp_path: Path) -> Harness:
    options: dict[str, Any] = {}
    if sim.crm == "rest":  # a template's tables, as the connections file has them
        options = {k: v for k, v in template(vendor).items() if isinstance(v, dict)}
    return Harness.from_url(sim.crm or vendor, sim.url, tmp_path, **options)


@pytest.mark.parametrize("vendor", SIMULATORS)
def test_every_simulator_is_driven_from_its_url(vendor: str, tmp_path: Path) -> None:
    sim = start(vendor)
    try:
        h = from_url(vendor, sim, tmp_path)
        # Seeded with the contract's contacts and token over HTTP.
        assert sorted(names(h.find(SHARED))) == ["Alan Turing", "Barbara Liskov"]
        assert h.vendor.requests == sim.requests > 0

        h.vendor.inject("503")
        with pytest.raises(CRMUnavailable) as down:
            h.find(SHARED)
        assert down.value.status_code == 503

        h.vendor.force_rate_limited(1, 7)
        with pytest.raises(RateLimited):
            h.find(SHARED)
        assert h.vendor.rate_limited == 1

        h.vendor.set_rate_limit((100, 60))
        assert sim.window is not None and sim.window.limit == 100
        h.vendor.reset_counters()
        assert (h.vendor.requests, h.vendor.rate_limited) == (0, 0)
        # What the vendor documents is what it sends (Copper: no rate-limit headers).
        headers = h.vendor.rate_limit_headers()
        assert (headers == []) == (vendor == "copper")

        unknown = requests.post(sim.url + "/_contract/nothing", timeout=5)
        assert unknown.status_code == 404
    finally:
        sim.stop()


def test_a_forced_429_carries_the_retry_after_it_was_given(tmp_path: Path) -> None:
    sim = start("clio")  # Clio's connector reads Retry-After (its documented wait)
    try:
        h = from_url("clio", sim, tmp_path)
        h.vendor.force_rate_limited(1, 7)
        with pytest.raises(RateLimited) as info:
            h.find(SHARED)
        assert info.value.retry_after_s == 7
    finally:
        sim.stop()


def test_a_body_that_does_not_fit_is_400_and_changes_nothing() -> None:
    sim = start("clio")
    try:
        bad = requests.post(sim.url + "/_contract/fault", json={"fault": "nope"}, timeout=5)
        assert bad.status_code == 400 and "unknown fault" in bad.json()["error"]
        bad = requests.post(sim.url + "/_contract/seed", json={"contacts": "x"}, timeout=5)
        assert bad.status_code == 400
        assert not sim.faults and sim.token == "the-simulators-own"
    finally:
        sim.stop()
