"""A real worker (``contact-lookup worker --metrics-port``, JSON logs) serves the domain
metrics over HTTP, logs one line of fields per job with no contact data in any line, and
refuses to start without its secrets."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from localredis import free_port
from tasks.celery_app import create_app
from tests.conftest import settings_for
from tests.operations.conftest import command, personal_data, sample, scrape, start
from tests.processes import Proc, base_env


def test_worker_metrics_and_logs(ops_url: str, connections: Path, tmp_path: Path) -> None:
    port = free_port()
    env = base_env(REDIS_URL=ops_url, CONTACT_LOOKUP_CONFIG=str(connections), LOG_FORMAT="json")
    worker = Proc(
        command(
            "worker",
            "--metrics-port",
            f"127.0.0.1:{port}",
            "-Q",
            "call_pop,call_log",
            "-c",
            "4",
            "-n",
            f"ops-{port}@%h",
            "--without-mingle",
            "--without-gossip",
        ),
        env,
        tmp_path,
        "worker",
    )
    app = create_app(settings_for(ops_url, connections))
    try:
        start(worker)
        jobs = {
            "matched": ("+14155550100", "call_log"),  # Ada Lovelace
            "not_found": ("+14155550999", "call_log"),
            "failed": ("not a number", "call_log"),
            "call_pop": ("+14155550123", "call_pop"),  # Grace Hopper
        }
        results = {
            what: app.send_task(
                "find_contact",
                kwargs={"connection": "demo", "phoneNumber": number, "purpose": purpose},
            ).get(timeout=30)
            for what, (number, purpose) in jobs.items()
        }
        assert results["matched"]["matchedContactInfo"][0]["name"] == "Ada Lovelace"
        assert results["failed"]["successful"] is False
        # The same number again: answered from the cache.
        again = app.send_task(
            "find_contact",
            kwargs={"connection": "demo", "phoneNumber": "+14155550100", "purpose": "call_log"},
        ).get(timeout=30)
        assert again["extraDataTracking"].get("isCached") is True

        m = scrape(f"http://127.0.0.1:{port}/metrics")
        lookups = "contact_lookup_lookups_total"
        assert sample(m, lookups, purpose="call_log", connection="demo", outcome="matched") == 1
        assert sample(m, lookups, purpose="call_log", connection="demo", outcome="not_found") == 1
        assert sample(m, lookups, purpose="call_log", connection="demo", outcome="failed") == 1
        assert sample(m, lookups, purpose="call_log", connection="demo", outcome="cached") == 1
        assert sample(m, lookups, purpose="call_pop", connection="demo", outcome="matched") == 1
        error_type = results["failed"]["extraDataTracking"]["errorType"]
        failures = "contact_lookup_lookup_failures_total"
        assert sample(m, failures, connection="demo", error_type=error_type) == 1
        # No phone number or name is ever a label value.
        labels = " ".join(m)
        for needle in personal_data():
            assert needle not in labels, needle
    finally:
        app.close()
        worker.stop()

    lines = worker.log_lines()
    assert lines, "the worker logged nothing"
    records = []
    for line in lines:
        try:
            records.append(json.loads(line))
        except ValueError:
            raise AssertionError(f"not a JSON line: {line[:200]!r}") from None
    assert all(r["ts"][-5] == "." and r["ts"].endswith("Z") for r in records)  # ms, UTC
    jobs_logged = [r for r in records if r.get("outcome") and r.get("task_id")]
    assert {r["outcome"] for r in jobs_logged} >= {"matched", "not_found", "failed", "cached"}
    failed = next(r for r in jobs_logged if r["outcome"] == "failed")
    assert failed["errorType"] == error_type and failed["connection"] == "demo"
    assert all(isinstance(r.get("duration_ms"), float) for r in jobs_logged)
    assert any("***0100" in r["message"] for r in jobs_logged)  # masked to the last 4 digits
    leaks = [line for line in lines for needle in personal_data() if needle in line]
    assert not leaks, leaks[:3]


def test_worker_refuses_to_start_without_header_safe_secrets(
    ops_url: str, connections: Path, tmp_path: Path
) -> None:
    token = "\u201cclio-token-7f3e\u201d"  # pasted with typographic quotes
    connections.write_text(
        connections.read_text()
        + '\n[connections.acme]\ncrm = "clio"\nbase_url = "http://127.0.0.1:9"\n'
        'token_env = "ACME_OPS_TOKEN"\n'
    )
    env = base_env(
        REDIS_URL=ops_url,
        CONTACT_LOOKUP_CONFIG=str(connections),
        LOG_FORMAT="json",
        ACME_OPS_TOKEN=token,
    )
    worker = Proc(
        command("worker", "-Q", "call_log", "-n", "nosecret@%h", "--without-mingle"),
        env,
        tmp_path,
        "worker",
    )
    worker.launch()
    assert worker.proc is not None
    code = worker.proc.wait(60)
    logs = worker.logs()
    assert code != 0
    assert " ready." not in logs
    assert "ACME_OPS_TOKEN" in logs and "HTTP header" in logs
    assert "clio-token-7f3e" not in logs


def test_flower_start_up_is_json_too(ops_url: str, connections: Path, tmp_path: Path) -> None:
    port = free_port()
    env = base_env(REDIS_URL=ops_url, CONTACT_LOOKUP_CONFIG=str(connections), LOG_FORMAT="json")
    flower = Proc(
        [
            sys.executable,
            "-m",
            "celery",
            "-A",
            "worker",
            "flower",
            f"--port={port}",
            "--address=127.0.0.1",
        ],
        env,
        tmp_path,
        "flower",
    )
    try:
        flower.launch().wait_until(lambda: "Registered tasks" in flower.logs(), 40)
    finally:
        flower.stop()
    lines = [line for line in flower.log_lines() if line.strip()]
    assert any("Visit me" in line for line in lines)
    for line in lines:
        record = json.loads(line)  # raises on a text line
        assert record["ts"].endswith("Z")
