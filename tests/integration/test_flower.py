"""A real Flower process against the test broker: tasks listed by name with readable kwargs,
behind basic auth, and the CRM token (a canary in the worker's environment) nowhere; a
cached call pop of the real webhook listed as a SUCCESS without contact data
(producers/flower_events.py); producers named ``<role>@host`` in Flower's /metrics, never
``gen<PID>@host`` (tasks/events.py)."""

from __future__ import annotations

import json
import re
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
import requests
from celery.contrib.testing.worker import start_worker

import tasks.find_contact  # noqa: F401
from contact_lookup.compose import Runtime
from contact_lookup.core.request import LookupRequest
from contact_lookup.model.purpose import PURPOSES
from localredis import free_port
from tasks.celery_app import create_app
from tasks.enqueue import enqueue
from tests.conftest import EXAMPLES, ROOT, live, settings_for
from tests.fakecrm import SEED, FakeCRM, fake_toml, wait_for
from tests.operations.conftest import command, start_on_free_port
from tests.processes import Proc, base_env

CANARY = "canary-TOKEN-9d1e77a2"
AUTH = ("ops", "flower-test-pw")


@pytest.fixture
def flower(tmp_path: Path, redis_url: str) -> Iterator[str]:
    port = free_port()
    env = {k: v for k, v in base_env().items() if not k.endswith("_TOKEN")}
    env.update(REDIS_URL=redis_url, CONTACT_LOOKUP_CONFIG=str(tmp_path / "cl.toml"))
    args = [sys.executable, "-m", "celery", "-A", "worker", "flower", f"--port={port}"]
    args += ["--address=127.0.0.1", f"--basic-auth={AUTH[0]}:{AUTH[1]}"]
    proc = Proc(args, env, tmp_path, "flower").launch()
    url = f"http://127.0.0.1:{port}"

    def up() -> bool:
        try:
            return requests.get(f"{url}/healthcheck", timeout=1).ok
        except requests.RequestException:
            return False

    with proc:
        proc.wait_until(up, 30)
        yield url


def test_flower_lists_tasks_with_readable_secret_free_kwargs(
    tmp_path: Path, redis_url: str, flower: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    with FakeCRM(SEED, token=CANARY) as crm:
        (tmp_path / "cl.toml").write_text(fake_toml(crm))
        monkeypatch.setenv(crm.token_env, CANARY)
        app = create_app(settings_for(redis_url, tmp_path / "cl.toml"))
        with start_worker(
            app,
            pool="threads",
            concurrency=2,
            perform_ping_check=False,
            queues=list(PURPOSES),
            shutdown_timeout=10,
        ):
            # Flower answers /healthcheck before its event receiver is connected; tasks sent
            # before that show up without name or kwargs. Wait until it has seen one whole.
            def seen_whole(ids: list[str]) -> dict:
                resp = requests.get(f"{flower}/api/tasks", auth=AUTH, timeout=5)
                tasks = resp.json() if resp.ok else {}
                return tasks if all(tasks.get(i, {}).get("name") for i in ids) else {}

            for _ in range(20):
                warm = enqueue(app, "fake", LookupRequest("+14155550102", purpose="call_log"))
                warm.get(timeout=10)
                if wait_for(lambda ids=[warm.id]: bool(seen_whole(ids)), 1):
                    break
            sent = [
                enqueue(
                    app,
                    "fake",
                    LookupRequest(
                        "+14155550101", purpose="call_log", debug=True, force_refresh=True
                    ),
                ),
                enqueue(app, "fake", LookupRequest("+14155550103", purpose="relookup")),
            ]
            results = [p.get(timeout=10) for p in sent]
            assert all(r["successful"] for r in results)
            assert CANARY not in str(results)  # debug traces are redacted too

            ids = [p.id for p in sent]
            assert wait_for(lambda: bool(seen_whole(ids)), 20), "Flower never saw the tasks"
            tasks = seen_whole(ids)
    for pending in sent:
        task = tasks[pending.id]
        assert task["name"] == "find_contact"
        assert "'phoneNumber': '+1415555010" in task["kwargs"]
        assert "'connection': 'fake'" in task["kwargs"]
    body = requests.get(f"{flower}/api/tasks", auth=AUTH, timeout=5).text
    assert CANARY not in body
    assert requests.get(f"{flower}/api/tasks", timeout=5).status_code == 401


PASTED = "“pasted-cnry-4Rk2Vq9”"  # typographic quotes: no HTTP header can carry it
PASTED_ENV = "FAKE_PASTED_CREDENTIAL"  # nothing in its name says it is a secret


def test_failed_lookups_are_failed_in_flower_and_a_pasted_token_is_nowhere(
    tmp_path: Path,
    redis_url: str,
    redis_client: redis.Redis,
    flower: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    with FakeCRM(SEED, token=CANARY) as crm:
        (tmp_path / "cl.toml").write_text(
            fake_toml(crm) + fake_toml(crm, name="pasted").replace(crm.token_env, PASTED_ENV)
        )
        monkeypatch.setenv(crm.token_env, CANARY)
        monkeypatch.setenv(PASTED_ENV, PASTED)
        app = create_app(settings_for(redis_url, tmp_path / "cl.toml"))
        with start_worker(
            app,
            pool="threads",
            concurrency=2,
            perform_ping_check=False,
            queues=list(PURPOSES),
            shutdown_timeout=10,
        ):

            def seen(ids: list[str], state: str) -> dict:
                resp = requests.get(f"{flower}/api/tasks", auth=AUTH, timeout=5)
                tasks = resp.json() if resp.ok else {}
                return tasks if all(tasks.get(i, {}).get("state") == state for i in ids) else {}

            for _ in range(20):  # until Flower's receiver is connected (see above)
                warm = enqueue(app, "fake", LookupRequest("+14155550102", purpose="call_log"))
                warm.get(timeout=10)
                if wait_for(lambda ids=[warm.id]: bool(seen(ids, "SUCCESS")), 1):
                    break
            failing = [
                enqueue(app, "fake", LookupRequest("12", purpose="call_log")),  # invalid
                enqueue(app, "pasted", LookupRequest("+14155550101", purpose="call_log")),
            ]
            found = enqueue(app, "fake", LookupRequest("+14155550101", purpose="relookup"))
            results = [p.get(timeout=10) for p in failing]
            assert found.get(timeout=10)["successful"]
            ids = [p.id for p in failing]
            assert wait_for(lambda: bool(seen(ids, "FAILURE")), 20), "Flower: not FAILURE"
            tasks = seen(ids, "FAILURE")
            assert wait_for(lambda: bool(seen([found.id], "SUCCESS")), 10)
            pages = [
                requests.get(f"{flower}/api/tasks", auth=AUTH, timeout=5).text,
                *(requests.get(f"{flower}/task/{i}", auth=AUTH, timeout=5).text for i in ids),
            ]
    # the caller still gets the spec's result object, stored as SUCCESS
    assert [r["successful"] for r in results] == [False, False]
    assert [r["extraDataTracking"]["errorType"] for r in results] == [
        "InvalidPhoneNumber",
        "ConfigError",  # the connector refuses the unsendable token, never quoting it
    ]
    assert {app.backend.get_task_meta(i)["status"] for i in ids} == {"SUCCESS"}
    for task_id, error_type in zip(ids, ("InvalidPhoneNumber", "ConfigError"), strict=True):
        exception = tasks[task_id]["exception"]
        assert exception.startswith("LookupFailed(") and exception[14:].startswith(error_type)
    assert all("LookupFailed" in page for page in pages[1:])  # the task pages say so too
    canary = PASTED.strip("“”")
    assert not [p for p in pages if canary in p or CANARY in p]
    assert canary not in json.dumps(results)
    leaks = [k for k in redis_client.scan_iter() if canary.encode() in (dump(redis_client, k))]
    assert not leaks


def dump(client: redis.Redis, key: bytes) -> bytes:
    """Every byte of a key's value, whatever its type (for a canary search)."""
    kind = client.type(key).decode()
    if kind == "string":
        return client.get(key) or b""
    if kind == "list":
        return b"".join(client.lrange(key, 0, -1))
    if kind == "hash":
        return b"".join(k + v for k, v in client.hgetall(key).items())
    if kind in ("set", "zset"):
        members = client.smembers(key) if kind == "set" else client.zrange(key, 0, -1)
        return b"".join(members)
    return key


def examples(tmp_path: Path) -> Path:
    """The example connections file (a JSON-file CRM, connection ``demo``) at cl.toml."""
    (tmp_path / "contacts.json").write_bytes((EXAMPLES / "contacts.json").read_bytes())
    path = tmp_path / "cl.toml"
    path.write_bytes((EXAMPLES / "contact-lookup.toml").read_bytes())
    return path


def test_a_cached_call_pop_of_the_webhook_is_a_success_in_flower(
    tmp_path: Path, redis_url: str, flower: str
) -> None:
    toml = examples(tmp_path)
    env = base_env(REDIS_URL=redis_url, CONTACT_LOOKUP_CONFIG=str(toml))

    def make(port: int) -> Proc:
        args = ["--host", "127.0.0.1", "--port", str(port), "--workers", "2", "--threads", "2"]
        return Proc(command("webhook", *args), env, tmp_path, f"webhook-{port}")

    webhook, port = start_on_free_port(make, lambda p: f"http://127.0.0.1:{p}/healthz")
    runtime = Runtime(settings_for(redis_url, toml))
    warm = runtime.service.lookup("demo", LookupRequest("+14155550100", purpose="call_log"))
    assert warm["matchedContactInfo"][0]["name"] == "Ada Lovelace"  # now cached
    ringing = json.loads((ROOT / "tests/fixtures/ringcentral/inbound_ringing.json").read_text())

    def cached_tasks() -> dict:
        resp = requests.get(f"{flower}/api/tasks", auth=AUTH, timeout=5)
        tasks = resp.json() if resp.ok else {}
        return {k: t for k, t in tasks.items() if t.get("name") == "call_pop.cached"}

    try:
        # Flower answers /healthcheck before its event receiver is connected: pop again (a
        # new call each time) until it has seen one.
        for i in range(20):
            event = live(ringing)
            event["uuid"] = f"flower-cached-pop-{i}"
            event["body"]["telephonySessionId"] = f"s-flower-cached-{i}"
            answer = requests.post(
                f"http://127.0.0.1:{port}/webhook/ringcentral", json=event, timeout=10
            )
            assert answer.json()["actions"] == ["answered-from-cache"]
            if wait_for(lambda: any(t["state"] == "SUCCESS" for t in cached_tasks().values()), 1):
                break
        tasks = cached_tasks()
        body = requests.get(f"{flower}/api/tasks", auth=AUTH, timeout=5).text
        metrics = requests.get(f"{flower}/metrics", auth=AUTH, timeout=5).text
    finally:
        webhook.stop()
    done = [t for t in tasks.values() if t["state"] == "SUCCESS"]
    assert done, f"Flower never showed a cached call pop: {tasks}"
    task = done[0]
    assert task["worker"] == f"webhook@{socket.gethostname()}"
    assert "'phoneNumber': '***0100'" in task["kwargs"] and "'connection': 'demo'" in task["kwargs"]
    assert task["result"] == "{'successful': True, 'isCached': True, 'contacts': 1}"
    assert 0 <= task["runtime"] < 10
    for contact_data in ("Lovelace", "5550100", "@"):  # no name, number or e-mail
        assert contact_data not in body.replace("webhook@", "")
    succeeded = 'flower_events_total{task="call_pop.cached",type="task-succeeded",worker="webhook@'
    assert succeeded in metrics


def test_producers_are_named_by_role_in_flower_metrics_never_gen_pid(
    tmp_path: Path, redis_url: str, flower: str
) -> None:
    """Two ``contact-lookup lookup`` processes (no worker: each sends its task and times
    out) count under one ``worker="lookup@<host>"`` series of Flower's /metrics."""
    toml = examples(tmp_path)
    app = create_app(settings_for(redis_url, toml))

    def sent(task_ids: list[str]) -> bool:
        resp = requests.get(f"{flower}/api/tasks", auth=AUTH, timeout=5)
        return resp.ok and all(i in resp.json() for i in task_ids)

    for _ in range(20):  # until Flower's receiver is connected (see above)
        warm = enqueue(app, "demo", LookupRequest("+14155550102", purpose="call_log"))
        if wait_for(lambda ids=[warm.id]: sent(ids), 1):
            break
    env = base_env(REDIS_URL=redis_url, CONTACT_LOOKUP_CONFIG=str(toml))
    for number in ("+14155550101", "+14155550103"):
        run = subprocess.run(
            command("lookup", number, "--connection", "demo", "--timeout", "0.5"),
            cwd=ROOT,
            env=env,
            capture_output=True,
            timeout=60,
        )
        assert run.returncode == 1, run.stderr  # no worker answered
    lookup_sent = f'type="task-sent",worker="lookup@{socket.gethostname()}"'

    def counted() -> float:
        text = requests.get(f"{flower}/metrics", auth=AUTH, timeout=5).text
        return sum(
            float(line.rpartition(" ")[2]) for line in text.splitlines() if lookup_sent in line
        )

    assert wait_for(lambda: counted() == 2, 20), "Flower did not count both processes' tasks"
    text = requests.get(f"{flower}/metrics", auth=AUTH, timeout=5).text
    workers = set(re.findall(r'worker="([^"]*)"', text))
    assert not [w for w in workers if re.match(r"gen\d+@", w)], workers
    app.close()
