"""``relookup`` as an operator runs a batch: the estimate, waiting on deferred jobs by their
state, Ctrl-C and ``--cancel`` (real Redis, a real in-process worker where one is needed)."""

from __future__ import annotations

import _thread
import json
import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from celery.contrib.testing.worker import start_worker

from contact_lookup.core import keys
from contact_lookup.core.ratelimit import Limit
from producers.cli import main
from producers.relookup import Budget, estimate_s, estimate_text
from tasks.celery_app import QUEUES, ContactLookupCelery
from tests.fakecrm import wait_for
from tests.producers.conftest import CONNECTIONS, queued, write_config

Capsys = pytest.CaptureFixture[str]

# One request per lookup (no formats); batches get 1 of 2 tokens per 2.2 s (1 is reserved).
LIMITED = """
[connections.limited]
crm = "json"
contacts = "contacts.json"
rc_account = "809646016"
rate_limit = "2/2"
"""
NUMBERS = ["+14155550100", "+14155550123", "+442079460958"]


@pytest.fixture
def config_path(tmp_path: Path) -> Path:
    path = write_config(tmp_path, 'default = "demo"\n')
    path.write_text(CONNECTIONS + LIMITED + path.read_text()[len(CONNECTIONS) :])
    return path


@pytest.fixture
def worker(env: Path, celery_app: ContactLookupCelery) -> Iterator[ContactLookupCelery]:
    with start_worker(
        celery_app,
        pool="threads",
        concurrency=2,
        perform_ping_check=False,
        queues=list(QUEUES),
        shutdown_timeout=10,
    ):
        yield celery_app


def test_the_estimate_follows_the_budget_less_the_reserve() -> None:
    limit = Limit(requests=20, window_s=2.0, reserve=4)  # 16 tokens per 2.2 s for batches
    assert estimate_s(500, Budget(limit, 1)) == pytest.approx(32 * 2.2)  # ceil(500/16)
    assert estimate_s(500, Budget(limit, 3)) == pytest.approx(100 * 2.2)  # 5 lookups/window
    assert estimate_s(500, Budget(None, 3)) is None
    text = estimate_text(500, Budget(limit, 2), "clio")
    assert "500 numbers to look up, at most 1000 CRM requests (2 per number)" in text
    assert "allows batches 16 of 20 requests per 2 s (4 kept for call pops)" in text
    assert "about 2 min 19 s" in text  # ceil(500 / 8) = 63 windows of 2.2 s


def test_deferred_jobs_are_waited_for_by_state_not_by_idle_time(
    worker: ContactLookupCelery, tmp_path: Path, capsys: Capsys
) -> None:
    source = tmp_path / "numbers.txt"
    source.write_text("\n".join(NUMBERS) + "\n")
    out = tmp_path / "out.jsonl"
    argv = ["relookup", str(source), "--connection", "limited", "--out", str(out)]
    # --timeout 1: far less than the deferrals (2.2 s and more), which must not stop it
    code = main([*argv, "--refresh", "--timeout", "1"])
    err = capsys.readouterr().err
    assert code == 0, err
    records = [json.loads(x) for x in out.read_text().splitlines()]
    assert sorted(r["phoneNumber"] for r in records) == sorted(NUMBERS)
    assert all(r["result"]["successful"] for r in records)
    retried = [r["result"]["extraDataTracking"].get("retryCount", 0) for r in records]
    assert sum(retried) >= 2  # the limiter deferred the second and third lookups
    assert "allows batches 1 of 2 requests per 2 s (1 kept for call pops)" in err


def run_in_thread(argv: list[str]) -> tuple[threading.Thread, dict[str, int]]:
    outcome: dict[str, int] = {}
    thread = threading.Thread(target=lambda: outcome.setdefault("code", main(argv)))
    thread.start()
    return thread, outcome


def test_ctrl_c_revokes_the_queued_jobs_and_says_how_to_resume(
    env: Path, tmp_path: Path, capsys: Capsys, client: redis.Redis
) -> None:
    source = tmp_path / "numbers.txt"
    source.write_text("".join(f"+1415555010{i}\n" for i in range(6)))
    out = tmp_path / "out.jsonl"
    argv = ["relookup", str(source), "--connection", "demo", "--refresh", "--window", "3"]
    argv += ["--out", str(out)]
    interrupted = threading.Event()

    def interrupt_when_the_window_is_full() -> None:
        if wait_for(lambda: len(queued(client, "relookup")) == 3, 10):
            _thread.interrupt_main()  # what Ctrl-C does: KeyboardInterrupt in the main thread
            interrupted.set()

    threading.Thread(target=interrupt_when_the_window_is_full, daemon=True).start()
    code = main(argv)
    err = capsys.readouterr().err
    assert interrupted.is_set()
    assert code == 130
    assert "interrupted (Ctrl-C); 3 queued jobs revoked" in err
    assert "6 rows still to do" in err
    assert f"resume with: contact-lookup relookup {source} --connection demo --out {out}" in err


def test_cancel_stops_a_batch_running_elsewhere(
    env: Path, tmp_path: Path, capsys: Capsys, client: redis.Redis
) -> None:
    source = tmp_path / "numbers.txt"
    source.write_text("".join(f"+1415555010{i}\n" for i in range(6)))
    out = tmp_path / "out.jsonl"
    argv = ["relookup", str(source), "--connection", "demo", "--refresh", "--window", "2"]
    thread, outcome = run_in_thread([*argv, "--out", str(out)])
    assert wait_for(lambda: len(queued(client, "relookup")) == 2, 10)
    assert main(["relookup", "--cancel", str(out)]) == 0
    thread.join(20)
    err = capsys.readouterr().err
    assert outcome["code"] == 1
    assert "cancelled the batch writing" in err and "2 queued jobs revoked" in err
    assert "stopped: cancelled (relookup --cancel)" in err
    assert main(["relookup", "--cancel", str(out), str(source)]) == 2  # usage error


def test_cancel_on_a_file_no_batch_writes_says_so(
    env: Path, tmp_path: Path, capsys: Capsys, client: redis.Redis
) -> None:
    """It said "cancelled the batch writing ...; 0 queued jobs revoked" (exit 0) for any
    file, a typo included, and left a cancel mark behind."""
    out = tmp_path / "no-batch.jsonl"
    assert main(["relookup", "--cancel", str(out)]) == 1
    err = capsys.readouterr().err
    assert f"nothing to cancel: no batch is writing {out}" in err, err
    assert "cancelled" not in err
    assert not client.exists(keys.relookup_cancel(os.path.abspath(out)))


def test_a_finished_batch_leaves_nothing_to_cancel(
    worker: ContactLookupCelery, tmp_path: Path, capsys: Capsys, client: redis.Redis
) -> None:
    source = tmp_path / "numbers.txt"
    source.write_text(NUMBERS[0] + "\n")
    out = tmp_path / "out.jsonl"
    assert main(["relookup", str(source), "--connection", "demo", "--out", str(out)]) == 0
    capsys.readouterr()
    assert main(["relookup", "--cancel", str(out)]) == 1
    assert "nothing to cancel" in capsys.readouterr().err
    assert not client.exists(keys.relookup_active(os.path.abspath(out)))


def test_lookup_timeout_tells_a_deferral_from_no_worker(
    worker: ContactLookupCelery, tmp_path: Path, capsys: Capsys
) -> None:
    def lookup(number: str, timeout: str) -> dict:
        argv = ["lookup", number, "--connection", "limited", "--purpose", "relookup"]
        assert main([*argv, "--refresh", "--timeout", timeout]) in (0, 1)
        answer: dict = json.loads(capsys.readouterr().out)
        return answer

    assert lookup(NUMBERS[0], "10")["successful"]  # takes the batches' one token
    deferred = lookup(NUMBERS[1], "1")
    assert not deferred["successful"]
    tracking = deferred["extraDataTracking"]
    assert tracking["errorType"] == "RateLimitDeferred"
    assert "Deferred by the shared rate limit until 20" in deferred["returnMessage"]["message"]
    assert tracking["deferredUntil"] > time.time()  # still to come when the caller gave up


def test_lookup_timeout_without_a_worker_says_so(env: Path, capsys: Capsys) -> None:
    code = main(["lookup", NUMBERS[0], "--connection", "demo", "--timeout", "0.5"])
    answer = json.loads(capsys.readouterr().out)
    assert code == 1 and answer["extraDataTracking"]["errorType"] == "WorkerTimeout"
    assert "No worker answered within 0.5 s" in answer["returnMessage"]["message"]
