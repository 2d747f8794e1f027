"""No finished result is lost or rewritten with several workers and a tight shared budget.

Two ``celery worker`` processes consume one queue; the CRM simulator allows 20 requests per
2 s and the connection's ``rate_limit`` is the same ``"20/2"``, so most of 500 jobs are
deferred by the shared limiter, some many times, and a deferred job's retry is often run by
the *other* worker. Before tasks/backend.py, the deferring worker could store RETRY after the
other had stored SUCCESS (2 and 1 of 500 in two runs); the result was lost.

Each round: 500 jobs, then both workers stop (a warm shutdown: every write they were going
to make is made), then every stored state must be SUCCESS with ``successful: true``, and the
CRM must never have answered 429. Three rounds with the default deferral spread, three with
the stress setting ``DEFERRAL_SPREAD=none`` (countdowns exactly as short as the limiter
allows, tens of milliseconds near the end of a window: the race at its likeliest). Then the
same 500 numbers through ``contact-lookup relookup``: 500 lines, exit 0.

Slow (about 70 s per round at 16 requests per 2.2 s for batches): ``make soak``, run by CI
(.ci/run), not part of ``make test``.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from contact_lookup.core.request import LookupRequest
from tasks.celery_app import create_app
from tasks.enqueue import enqueue
from tests.conftest import ROOT, flushed_db, settings_for
from tests.fakecrm import FakeCRM, fake_toml
from tests.faults.faultkit import WorkerProcess, base_env, figure, metas, wait_finished

SOAK_DB = 15
JOBS = 500
RATE = (20, 2.0)
NUMBERS = [f"+1415556{i:04d}" for i in range(JOBS)]
CONTACTS = [{"id": f"s-{i}", "name": f"Soak {i}", "phone": n} for i, n in enumerate(NUMBERS)]
ROUNDS = 3


@pytest.fixture
def url() -> Iterator[str]:
    with flushed_db(SOAK_DB) as url:
        yield url


@pytest.fixture
def crm() -> Iterator[FakeCRM]:
    with FakeCRM(CONTACTS, rate_limit=RATE) as sim:
        yield sim


def worker_env(url: str, toml: Path, sim: FakeCRM, spread: str) -> dict[str, str]:
    return base_env(
        REDIS_URL=url,
        CONTACT_LOOKUP_CONFIG=str(toml),
        PYTHONPATH=str(ROOT),
        DEFERRAL_SPREAD=spread,
        **sim.env(),
    )


def two_workers(env: dict[str, str], tmp: Path, tag: str, queue: str) -> list[WorkerProcess]:
    return [
        WorkerProcess(env, tmp, f"{tag}-w{i}", queues=queue, concurrency=8).start() for i in (1, 2)
    ]


def run_round(url: str, toml: Path, sim: FakeCRM, tmp: Path, tag: str, spread: str) -> dict:
    with redis.Redis.from_url(url) as client:
        client.flushdb()
    sim.reset_counters()
    workers = two_workers(worker_env(url, toml, sim, spread), tmp, tag, "call_log")
    app = create_app(settings_for(url, toml))
    started = time.monotonic()
    try:
        ids = [enqueue(app, "fake", LookupRequest(n, purpose="call_log")).id for n in NUMBERS]
        with redis.Redis.from_url(url) as client:
            wait_finished(client, ids, timeout_s=300)
        elapsed = time.monotonic() - started
    finally:
        for w in workers:
            w.stop(30)  # warm shutdown: any write still coming is made now
        app.close()
    with redis.Redis.from_url(url) as client:
        stored = metas(client, ids)
    statuses: dict[str, int] = {}
    for meta in stored.values():
        statuses[meta["status"]] = statuses.get(meta["status"], 0) + 1
    results = [m.get("result") or {} for m in stored.values() if m["status"] == "SUCCESS"]
    waits = [w for r in results for w in r.get("extraDataTracking", {}).get("backoffSeconds", [])]
    served = {m.get("worker") for m in stored.values()}
    return {
        "stored": len(stored),
        "statuses": statuses,
        "successful": sum(bool(r.get("successful")) for r in results),
        "deferrals": len(waits),
        "shortest_countdown_s": min(waits) if waits else None,
        "workers": len(served),
        "crm_429": sim.rate_limited,
        "seconds": round(elapsed, 1),
    }


@pytest.mark.timeout(1200)
@pytest.mark.parametrize("spread", ["window", "none"])
def test_no_result_is_lost_with_two_workers_and_a_tight_budget(
    url: str, crm: FakeCRM, tmp_path: Path, spread: str
) -> None:
    toml = tmp_path / "cl.toml"
    toml.write_text(fake_toml(crm, rate_limit="20/2"))
    rounds = [run_round(url, toml, crm, tmp_path, f"{spread}{n}", spread) for n in range(ROUNDS)]
    figure(f"races_{spread}", **{f"round{n + 1}": r for n, r in enumerate(rounds)})
    for r in rounds:
        assert r["statuses"] == {"SUCCESS": JOBS}, r  # none lost, none left RETRY/STARTED
        assert r["stored"] == r["successful"] == JOBS, r
        if spread == "window":
            assert r["crm_429"] == 0, r
        else:
            # The stress setting sends each deferred request the instant its token frees; on
            # a loaded machine one can reach the CRM more than the limiter's slack (0.2 s
            # here) after its token was taken (seen: 1 in 1,500). It is retried and still
            # ends SUCCESS, which is what this test guards; the default setting stays at 0.
            assert r["crm_429"] <= JOBS // 100, r
        assert r["deferrals"] > JOBS, r  # the limiter deferred most jobs, many repeatedly
        assert r["workers"] == 2, r  # both processes took jobs from the one queue
    if spread == "none":
        assert min(r["shortest_countdown_s"] for r in rounds) < 0.1  # the stress it promises


@pytest.mark.timeout(600)
def test_relookup_of_500_numbers_on_two_workers_writes_every_line(
    url: str, crm: FakeCRM, tmp_path: Path
) -> None:
    toml = tmp_path / "cl.toml"
    toml.write_text(fake_toml(crm, rate_limit="20/2"))
    env = worker_env(url, toml, crm, "window")
    workers = two_workers(env, tmp_path, "relookup", "relookup")
    numbers = tmp_path / "numbers.txt"
    numbers.write_text("\n".join(NUMBERS) + "\n")
    out = tmp_path / "out.jsonl"
    started = time.monotonic()
    try:
        args = ["relookup", str(numbers), "--connection", "fake", "--refresh", "--out", str(out)]
        batch = subprocess.run(
            [sys.executable, "-m", "producers.cli", *args, "--timeout", "60"],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=600,
        )
    finally:
        for w in workers:
            w.stop(30)
    elapsed = time.monotonic() - started
    records: list[dict[str, Any]] = [json.loads(x) for x in out.read_text().splitlines()]
    figure(
        "relookup_two_workers",
        numbers=JOBS,
        lines=len(records),
        exit=batch.returncode,
        seconds=round(elapsed, 1),
        crm_429=crm.rate_limited,
    )
    assert batch.returncode == 0, batch.stderr[-2000:]
    assert len(records) == JOBS and sorted(r["line"] for r in records) == list(range(1, JOBS + 1))
    assert all(r["result"]["successful"] for r in records)
    assert [
        r["result"]["matchedContactInfo"][0]["id"] for r in sorted(records, key=lambda r: r["line"])
    ] == [c["id"] for c in CONTACTS]
    assert "every row done" in batch.stderr and "about 1 min" in batch.stderr  # the estimate
    assert crm.rate_limited == 0
