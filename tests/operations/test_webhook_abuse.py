"""The webhook under bad traffic, served by the real command (gunicorn, JSON logs):

- bodies nested past MAX_JSON_DEPTH get 400 without a traceback while valid deliveries sent
  alongside are all accepted;
- 50 slow clients cannot starve it behind the deployment's nginx (deploy/nginx), while the
  same clients straight at gunicorn do (the control that shows the test can fail);
- /metrics sums every gunicorn process and asks for credentials;
- a verification token unfit for an HTTP header stops start-up naming its variable;
- every line it writes is JSON, access log included."""

from __future__ import annotations

import base64
import contextlib
import json
import os
import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
import requests

from contact_lookup.compose import Runtime
from contact_lookup.core.request import LookupRequest
from localredis import free_port
from tests.conftest import ROOT, live, settings_for
from tests.operations.conftest import command, sample, scrape, start_on_free_port
from tests.processes import Proc, base_env

TOKEN = "ops-verif-token-2b7c"
PATH = "/webhook/ringcentral"
FIXTURES = ROOT / "tests" / "fixtures" / "ringcentral"
METRICS_AUTH = "ops:metrics-pass-91"


def delivery(uuid: str) -> bytes:
    """An event with no job (skipped), so a flood of them needs no worker."""
    data: dict[str, Any] = json.loads((FIXTURES / "unknown_event.json").read_text())
    data["uuid"] = uuid
    return json.dumps(data).encode()


def post(base: str, body: bytes, timeout: float = 10) -> requests.Response:
    assert base.startswith("http://127.0.0.1:")
    headers = {"Content-Type": "application/json", "Verification-Token": TOKEN}
    return requests.post(base + PATH, data=body, headers=headers, timeout=timeout)


@pytest.fixture
def webhook(ops_url: str, connections: Path, tmp_path: Path) -> Iterator[tuple[str, Proc]]:
    env = base_env(
        REDIS_URL=ops_url,
        CONTACT_LOOKUP_CONFIG=str(connections),
        RC_VERIFICATION_TOKEN=TOKEN,
        LOG_FORMAT="json",
        METRICS_BASIC_AUTH=METRICS_AUTH,
    )

    def make(port: int) -> Proc:
        args = ["--host", "127.0.0.1", "--port", str(port), "--workers", "2", "--threads", "2"]
        return Proc(command("webhook", *args), env, tmp_path, f"webhook-{port}")

    proc, port = start_on_free_port(make, lambda p: f"http://127.0.0.1:{p}/healthz")
    try:
        yield f"http://127.0.0.1:{port}", proc
    finally:
        proc.stop()


def test_deep_bodies_get_400_and_valid_deliveries_all_pass(webhook: tuple[str, Proc]) -> None:
    base, proc = webhook
    deep_objects = b'{"a":' * 5000 + b"1" + b"}" * 5000
    deep_arrays = b"[" * 60000 + b"]" * 60000
    bodies = []
    for i in range(300):
        kind = ("valid", "objects", "arrays")[i % 3]
        body = {"valid": delivery(f"ops-flood-{i}"), "objects": deep_objects}.get(kind, deep_arrays)
        bodies.append((kind, body))
    with ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(lambda kb: (kb[0], post(base, kb[1]).status_code), bodies))
    valid = [status for kind, status in answers if kind == "valid"]
    deep = [status for kind, status in answers if kind != "valid"]
    assert valid == [200] * 100
    assert deep == [400] * 200

    unauthenticated = requests.get(base + "/metrics", timeout=10)
    assert unauthenticated.status_code == 401
    auth = {"Authorization": "Basic " + base64.b64encode(METRICS_AUTH.encode()).decode()}
    m = scrape(base + "/metrics", auth)  # both gunicorn processes, summed
    deliveries = "contact_lookup_webhook_deliveries_total"
    assert sample(m, deliveries, action="refused", reason="too_deep") == 200
    assert sample(m, deliveries, action="skipped", reason="unknown_event") == 100

    proc.stop()
    lines = proc.log_lines()
    records = [json.loads(line) for line in lines]  # every line JSON, gunicorn's too
    assert not [r for r in records if "Traceback" in json.dumps(r)]
    access = [r for r in records if r["logger"] == "gunicorn.access"]
    assert len([r for r in access if r.get("status") == 400]) == 200
    assert all(r["path"] in (PATH, "/healthz", "/metrics") for r in access)
    assert any(r["logger"] == "gunicorn.error" and "Listening" in r["message"] for r in records)
    skips = [r for r in records if r.get("action") == "skipped"]
    assert skips and all(r["reason"] == "unknown_event" for r in skips)


def _drip(sockets: list[socket.socket], stop: threading.Event) -> None:
    """Each slow client sends one more header byte every 0.3 s and never finishes."""
    while not stop.wait(0.3):
        for s in sockets:
            with contextlib.suppress(OSError):
                s.send(b"X")


def _slow_clients(port: int, count: int) -> list[socket.socket]:
    out = []
    for _ in range(count):
        s = socket.create_connection(("127.0.0.1", port), timeout=5)
        s.send(b"POST /webhook/ringcentral HTTP/1.1\r\nHost: x\r\nX-Slow: ")
        out.append(s)
    return out


def _nginx(tmp_path: Path, upstream_port: int) -> tuple[subprocess.Popen[bytes], int]:
    listen = free_port()
    template = (ROOT / "deploy" / "nginx" / "webhook.conf.template").read_text()
    site = template.replace("${WEBHOOK_UPSTREAM}", f"127.0.0.1:{upstream_port}").replace(
        "${WEBHOOK_LISTEN}", f"127.0.0.1:{listen}"
    )
    run = tmp_path / "nginx"
    run.mkdir()
    (run / "webhook.conf").write_text(site)
    temps = "\n".join(
        f"{name}_temp_path {run}/{name};"
        for name in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
    )
    user = "user root root;" if os.geteuid() == 0 else ""
    (run / "nginx.conf").write_text(
        f"daemon off; worker_processes 1; pid {run}/nginx.pid; error_log {run}/error.log; {user}\n"
        "events { worker_connections 1024; }\n"
        f"http {{ access_log off; {temps} include {run}/webhook.conf; }}\n"
    )
    nginx = shutil.which("nginx") or "/usr/sbin/nginx"
    proc = subprocess.Popen([nginx, "-p", str(run), "-c", str(run / "nginx.conf")])
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", listen), timeout=1).close()
            return proc, listen
        except OSError:
            time.sleep(0.05)
    proc.kill()
    raise AssertionError((run / "error.log").read_text())


@pytest.mark.skipif(
    not (shutil.which("nginx") or Path("/usr/sbin/nginx").exists()),
    reason="nginx is not installed (.ci/run installs it)",
)
def test_fifty_slow_clients_cannot_starve_it_behind_the_proxy(
    webhook: tuple[str, Proc], tmp_path: Path
) -> None:
    base, _proc = webhook
    port = int(base.rsplit(":", 1)[1])
    stop = threading.Event()

    # Control: straight at gunicorn (2 processes x 2 threads), 50 drippers hold every thread.
    direct = _slow_clients(port, 50)
    dripper = threading.Thread(target=_drip, args=(direct, stop), daemon=True)
    dripper.start()
    try:
        # Once gunicorn has handed the dripping connections to its threads, a probe times out.
        deadline, starved = time.monotonic() + 15, False
        while not starved and time.monotonic() < deadline:
            try:
                post(base, delivery(f"ops-direct-{time.monotonic()}"), timeout=2)
            except requests.RequestException:
                starved = True
        assert starved, "50 slow clients did not hold gunicorn's threads: the control failed"
    finally:
        stop.set()
        dripper.join()
        for s in direct:
            s.close()

    nginx, listen = _nginx(tmp_path, port)
    proxied = f"http://127.0.0.1:{listen}"
    stop = threading.Event()
    slow = _slow_clients(listen, 50)
    dripper = threading.Thread(target=_drip, args=(slow, stop), daemon=True)
    dripper.start()
    try:
        statuses = [
            post(proxied, delivery(f"ops-slow-{i}"), timeout=3).status_code for i in range(30)
        ]
    finally:
        stop.set()
        dripper.join()
        for s in slow:
            s.close()
        nginx.terminate()
        nginx.wait(10)
    assert statuses == [200] * 30


def test_a_verification_token_unfit_for_a_header_stops_start_up(
    ops_url: str, connections: Path, tmp_path: Path
) -> None:
    env = base_env(
        REDIS_URL=ops_url,
        CONTACT_LOOKUP_CONFIG=str(connections),
        RC_VERIFICATION_TOKEN="\u201cops-token-44c1\u201d",
    )
    out = subprocess.run(
        command("webhook", "--port", str(free_port())),
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 2
    assert "RC_VERIFICATION_TOKEN" in out.stderr and "HTTP header" in out.stderr
    assert "ops-token-44c1" not in out.stderr + out.stdout
    assert len(out.stderr.strip().splitlines()) == 1


def test_a_cached_call_pop_is_counted_and_timed(
    webhook: tuple[str, Proc], ops_url: str, connections: Path
) -> None:
    base, proc = webhook
    runtime = Runtime(settings_for(ops_url, connections))
    warm = runtime.service.lookup("demo", LookupRequest("+14155550100", purpose="call_log"))
    assert warm["matchedContactInfo"][0]["name"] == "Ada Lovelace"  # now in the cache
    ringing = live(json.loads((FIXTURES / "inbound_ringing.json").read_text()))  # not stale
    ringing["uuid"] = "ops-cached-pop-1"
    answer = post(base, json.dumps(ringing).encode())
    assert answer.json()["actions"] == ["answered-from-cache"]
    auth = {"Authorization": "Basic " + base64.b64encode(METRICS_AUTH.encode()).decode()}
    m = scrape(base + "/metrics", auth)
    assert sample(m, "contact_lookup_call_pop_seconds_count", path="cached") == 1
    lookups = "contact_lookup_lookups_total"
    assert sample(m, lookups, purpose="call_pop", connection="demo", outcome="cached") == 1
    deliveries = "contact_lookup_webhook_deliveries_total"
    assert sample(m, deliveries, action="answered-from-cache") == 1
    proc.stop()
    logs = proc.logs()
    assert "LOVELACE" not in logs.upper() and "5550100" not in logs
