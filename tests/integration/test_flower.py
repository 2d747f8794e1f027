"""A real Flower process against the test broker: tasks listed by name with readable kwargs,
behind basic auth, and the CRM token (a canary in the worker's environment) nowhere."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
import requests
from celery.contrib.testing.worker import start_worker

import tasks.find_contact  # noqa: F401
from contact_lookup.core.request import LookupRequest
from contact_lookup.model.purpose import PURPOSES
from localredis import free_port
from tasks.celery_app import create_app
from tasks.enqueue import enqueue
from tests.conftest import settings_for
from tests.fakecrm import SEED, FakeCRM, fake_toml, wait_for
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
