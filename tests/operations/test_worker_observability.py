"""A real worker (``contact-lookup worker --metrics-port``, JSON logs) serves the domain
metrics over HTTP, logs one line of fields per job with no contact data in any line, and
refuses to start without its secrets."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from crmsim.clio import ClioSimulator
from localredis import free_port
from tasks.celery_app import create_app
from tests.conftest import EXAMPLES, settings_for
from tests.fakecrm import wait_for
from tests.operations.conftest import (
    command,
    personal_data,
    sample,
    scrape,
    start_on_free_port,
)
from tests.processes import Proc, base_env


def test_worker_metrics_and_logs(ops_url: str, connections: Path, tmp_path: Path) -> None:
    env = base_env(REDIS_URL=ops_url, CONTACT_LOOKUP_CONFIG=str(connections), LOG_FORMAT="json")

    def make(port: int) -> Proc:
        return Proc(
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
            f"worker-{port}",
        )

    app = create_app(settings_for(ops_url, connections))
    worker: Proc | None = None
    try:
        worker, port = start_on_free_port(make)
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
        if worker is not None:
            worker.stop()

    assert worker is not None
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


def test_crm_limiter_and_call_pop_metrics(ops_url: str, connections: Path, tmp_path: Path) -> None:
    """A Clio connection over HTTP with a budget of 3 requests a minute (1 kept for call
    pops): two logging lookups are sent, the third is deferred; a call pop is published."""
    contacts = json.loads((EXAMPLES / "contacts.json").read_text())
    with ClioSimulator(contacts, token="clio-ops-token-81") as sim:
        connections.write_text(
            connections.read_text()
            + f'\n[connections.acme]\ncrm = "clio"\nbase_url = "{sim.url}"\n'
            f'token_env = "{sim.token_env}"\nrc_account = "1"\nrate_limit = "3/60"\n'
        )
        env = base_env(
            REDIS_URL=ops_url,
            CONTACT_LOOKUP_CONFIG=str(connections),
            LOG_FORMAT="json",
            **sim.env(),
        )

        def make(port: int) -> Proc:
            return Proc(
                command(
                    "worker",
                    "--metrics-port",
                    str(port),
                    "-Q",
                    "call_pop,call_log",
                    "-c",
                    "2",
                    "-n",
                    f"crm-{port}@%h",
                    "--without-mingle",
                    "--without-gossip",
                ),
                env,
                tmp_path,
                f"worker-{port}",
            )

        app = create_app(settings_for(ops_url, connections))
        worker: Proc | None = None
        try:
            worker, port = start_on_free_port(make)
            for number in ("+14155550100", "+14155550177"):
                app.send_task(
                    "find_contact",
                    kwargs={"connection": "acme", "phoneNumber": number, "purpose": "call_log"},
                ).get(timeout=30)
            app.send_task(  # no token left outside the call-pop reserve: deferred
                "find_contact",
                kwargs={"connection": "acme", "phoneNumber": "+14155550123", "purpose": "call_log"},
            )
            pop = {"rcAccountId": "1", "rcExtensionId": "2", "telephonySessionId": "s-1"}
            app.send_task(
                "find_contact",
                kwargs={
                    "connection": "demo",
                    "phoneNumber": "+14155550100",
                    "purpose": "call_pop",
                    "callPop": pop,
                },
                expires=20,  # CALL_POP_DEADLINE: how the producers send call pops
            ).get(timeout=30)
            url = f"http://127.0.0.1:{port}/metrics"
            deferrals = "contact_lookup_rate_limit_deferrals_total"
            assert wait_for(
                lambda: sample(scrape(url), deferrals, connection="acme", purpose="call_log") == 1,
                20,
            )
            m = scrape(url)
        finally:
            app.close()
            if worker is not None:
                worker.stop()
    assert sample(m, "contact_lookup_crm_requests_total", connection="acme", status="200") == 2
    assert sample(m, "contact_lookup_crm_request_seconds_count", connection="acme") == 2
    assert sample(m, "contact_lookup_rate_budget_remaining", connection="acme") == 1
    assert sample(m, "contact_lookup_call_pop_seconds_count", path="worker") == 1
    assert 0 <= sample(m, "contact_lookup_call_pop_seconds_sum", path="worker") < 20
