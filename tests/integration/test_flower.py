"""A real Flower process against the test broker: tasks listed by name with readable kwargs,
behind basic auth, and the CRM token (a canary in the worker's environment) nowhere."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
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
