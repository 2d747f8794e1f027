"""End to end with a vendor's contract: a real worker against the Clio simulator with its
rate limit on. The job is answered 429 + Retry-After, retries after that wait and succeeds;
the waits and Clio's X-RateLimit state are in the result."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import requests
from celery.contrib.testing.worker import start_worker

import tasks.find_contact  # noqa: F401
from contact_lookup.core.request import LookupRequest
from contact_lookup.model.config import parse_config
from contact_lookup.model.purpose import PURPOSES
from crmsim.clio import ClioSimulator
from tasks.celery_app import create_app
from tasks.enqueue import enqueue
from tests.conftest import EXAMPLES, settings_for


def test_worker_waits_out_clio_rate_limit(
    tmp_path: Path, redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    with ClioSimulator(EXAMPLES / "contacts.json", token="clio-e2e-token") as sim:
        table = sim.connection()
        toml = "[connections.acme]\n" + "".join(f'{k} = "{v}"\n' for k, v in table.items())
        (tmp_path / "cl.toml").write_text(toml + 'formats = "(***) ***-****"\n')
        parse_config({"connections": {"acme": table}}, tmp_path)  # the table is valid
        monkeypatch.setenv(sim.token_env, "clio-e2e-token")
        app = create_app(settings_for(redis_url, tmp_path / "cl.toml"))
        with start_worker(
            app,
            pool="threads",
            concurrency=2,
            perform_ping_check=False,
            queues=list(PURPOSES),
            shutdown_timeout=10,
        ):
            # Another integration on the same Clio token has just used the whole window, so
            # our first request meets Clio's 429 + Retry-After (our limiter could not know).
            sim.set_rate_limit((2, 2))
            for _ in range(2):
                requests.get(
                    f"{sim.url}/api/v4/contacts.json",
                    params={"query": "x"},
                    headers={"Authorization": "Bearer clio-e2e-token"},
                    timeout=5,
                )
            started = time.monotonic()
            result = enqueue(app, "acme", LookupRequest("+14155550123", purpose="call_log")).get(20)
            elapsed = time.monotonic() - started
    tracking = result["extraDataTracking"]
    assert result["successful"], result
    names = {c["name"] for c in result["matchedContactInfo"]}
    assert names == {"Grace Hopper", "Alan Turing"}  # Liskov is stored as 415-555-0123
    # 429s only for the first attempt's two searches, sent together (fan-out): after them,
    # every worker holds off until Clio's reset.
    assert sim.rate_limited == 2 and tracking["retryCount"] >= 1
    first_wait = tracking["backoffSeconds"][0]
    assert first_wait.is_integer() and 1 <= first_wait <= 2  # Clio's whole-second Retry-After
    assert elapsed >= sum(tracking["backoffSeconds"]) - 0.3
    assert {"ratelimitRemaining", "ratelimitAmount", "ratelimitReset"} <= set(tracking)
