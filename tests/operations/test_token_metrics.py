"""The OAuth refresh records contact_lookup_token_refreshes_total and
contact_lookup_token_expiry_timestamp_seconds (a real Redis, the Clio and OAuth simulators
over HTTP; the values read from this process's registry)."""

from __future__ import annotations

import time
from pathlib import Path

import redis
from prometheus_client import REGISTRY

from contact_lookup.core.request import LookupRequest
from crmsim.clio import ClioSimulator
from tests.auth.authkit import NUMBERS, manager, oauth_sim, seed, service, setup


def value(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def test_a_refresh_is_counted_and_sets_the_expiry(
    redis_client: redis.Redis, tmp_path: Path
) -> None:
    before = value("contact_lookup_token_refreshes_total", connection="crm", outcome="ok")
    with oauth_sim(ClioSimulator, lifetime_s=600) as (sim, oauth):
        config = setup(tmp_path, sim, oauth)
        tokens = manager(redis_client, oauth)
        seed(tokens, oauth, "crm", expired=True)
        result = service(config, redis_client, tokens).lookup(
            "crm", LookupRequest(NUMBERS[0], force_refresh=True)
        )
    assert result["successful"], result
    assert oauth.token_calls == 1
    after = value("contact_lookup_token_refreshes_total", connection="crm", outcome="ok")
    assert after - before == 1
    expiry = value("contact_lookup_token_expiry_timestamp_seconds", connection="crm")
    assert time.time() + 500 < expiry <= time.time() + 600
