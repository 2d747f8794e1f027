"""The broker Redis restarted (append-only file on): jobs queued before the restart are still
done after it, and a running worker reconnects by itself and consumes what is sent after it.

The broker and result backend are a private ``redis-server`` with ``appendonly yes`` (as in
docker-compose.yml); the contact cache stays on the test Redis, database 10.
"""

from __future__ import annotations

import base64
import importlib.util
import json
import shutil
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from contact_lookup.core.request import LookupRequest
from contact_lookup.settings import Settings
from localredis import EmbeddedRedis
from tasks.celery_app import QUEUES, ContactLookupCelery, create_app
from tasks.enqueue import enqueue
from tests.conftest import EXAMPLES, ROOT, live
from tests.fakecrm import FakeCRM, fake_toml, wait_for
from tests.faults.faultkit import WorkerProcess, base_env, figure, wait_finished

pytestmark = [
    pytest.mark.faults,
    # The RabbitMQ on this machine is shared by every run: a test cannot restart it. Its
    # worker kills and lost-connection behaviour are in tests/scaleout/test_kill_brokers.py.
    pytest.mark.redis_transport(
        "restarts a private Redis broker (append-only file, kombu's Redis reconnect)"
    ),
]

CONTACTS = [
    {"id": f"b-{i}", "name": f"Broker Test {i}", "phone": f"+1415555{2000 + i:04d}"}
    for i in range(100)
]
TIMEOUT_S = 30


@pytest.fixture
def broker() -> Iterator[EmbeddedRedis]:
    with EmbeddedRedis(appendonly=True) as server:
        yield server


@pytest.fixture
def crm() -> Iterator[FakeCRM]:
    with FakeCRM(CONTACTS, token="broker-test-token") as sim:
        yield sim


def setup(
    tmp_path: Path, broker: EmbeddedRedis, faults_url: str, crm: FakeCRM
) -> tuple[ContactLookupCelery, dict[str, str]]:
    toml = tmp_path / "cl.toml"
    toml.write_text(fake_toml(crm))
    settings = Settings(
        redis_url=faults_url,
        broker_url=broker.url,
        result_backend=broker.url,
        cache_url=faults_url,
        state_url=faults_url,
        config_path=str(toml),
        visibility_timeout_s=30,
    )
    env = base_env(
        REDIS_URL=faults_url,
        BROKER_URL=broker.url,
        RESULT_BACKEND=broker.url,
        CACHE_URL=faults_url,
        STATE_URL=faults_url,
        CONTACT_LOOKUP_CONFIG=str(toml),
        **crm.env(),
    )
    return create_app(settings), env


def send(app: ContactLookupCelery, contacts: list[dict[str, str]]) -> list[str]:
    return [
        enqueue(app, "fake", LookupRequest(c["phone"], purpose="call_log")).id for c in contacts
    ]


def assert_found(done: dict[str, dict], ids: list[str], contacts: list[dict[str, str]]) -> None:
    missing = [t for t in ids if t not in done]
    assert not missing, f"{len(missing)} of {len(ids)} jobs never finished"
    for task_id, contact in zip(ids, contacts, strict=True):
        result = done[task_id]["result"]
        assert result["successful"] is True
        assert [c["id"] for c in result["matchedContactInfo"]] == [contact["id"]]


def test_jobs_queued_before_a_broker_restart_are_done_after_it(
    tmp_path: Path, broker: EmbeddedRedis, faults_url: str, crm: FakeCRM
) -> None:
    app, env = setup(tmp_path, broker, faults_url, crm)
    batch = CONTACTS[:50]
    try:
        ids = send(app, batch)  # no worker yet: they wait in the broker
    finally:
        app.close()
    client = redis.Redis.from_url(broker.url)
    try:
        assert client.llen("call_log") == len(batch)
        broker.restart()  # same port, same append-only file
        assert client.llen("call_log") == len(batch), "the restart lost queued jobs"
        with WorkerProcess(env, tmp_path, "after-restart"):
            done = wait_finished(client, ids, TIMEOUT_S)
    finally:
        client.close()
    assert_found(done, ids, batch)
    assert crm.requests == len(batch)
    figure("broker_restart_queued", queued=len(batch), lost=len(batch) - len(done))


def test_a_running_worker_reconnects_after_a_broker_restart(
    tmp_path: Path, broker: EmbeddedRedis, faults_url: str, crm: FakeCRM
) -> None:
    app, env = setup(tmp_path, broker, faults_url, crm)
    before, after = CONTACTS[:10], CONTACTS[10:40]
    client = redis.Redis.from_url(broker.url)
    try:
        with WorkerProcess(env, tmp_path, "reconnects") as worker:
            pid = worker.proc.pid if worker.proc else None
            first = send(app, before)
            assert_found(wait_finished(client, first, TIMEOUT_S), first, before)

            broker.restart()
            # The producer reconnects too (its publish retries), and the worker consumes
            # again without being restarted.
            second = send(app, after)
            done = wait_finished(client, second, TIMEOUT_S)
            assert worker.alive and worker.proc is not None and worker.proc.pid == pid
            lines = worker.log_lines()
    finally:
        client.close()
        app.close()
    assert_found(done, second, after)
    assert any("Connection to broker lost" in line for line in lines), "no restart was seen"
    figure("broker_restart_running", sent_after_restart=len(after), lost=len(after) - len(done))


# ----- the webhook while the broker goes down and comes back ----------------------------------
FIXTURES = ROOT / "tests" / "fixtures" / "ringcentral"


def fixture_event(name: str, uuid: str) -> bytes:
    event = live(json.loads((FIXTURES / f"{name}.json").read_text()))  # a live event, not stale
    event["uuid"] = uuid
    return json.dumps(event).encode()


def queued_phones(client: redis.Redis) -> list[str]:
    """The phoneNumber of every job waiting on any queue (kombu keeps a queue as a list)."""
    out = []
    for queue in QUEUES:
        for raw in client.lrange(queue, 0, -1):
            body = json.loads(base64.b64decode(json.loads(raw)["body"]))
            out.append(body[1]["phoneNumber"])
    return sorted(out)


@pytest.mark.skipif(importlib.util.find_spec("producers.webhook") is None, reason="no webhook yet")
def test_the_webhook_answers_503_while_the_broker_is_down_and_recovers_by_itself(
    tmp_path: Path, broker: EmbeddedRedis, faults_url: str, faults_redis: redis.Redis
) -> None:
    from producers.pipeline import build_pipeline
    from producers.webhook import create_webhook_app

    shutil.copy(EXAMPLES / "contacts.json", tmp_path / "contacts.json")
    shutil.copy(EXAMPLES / "contact-lookup.toml", tmp_path / "cl.toml")
    settings = Settings(
        redis_url=faults_url,
        broker_url=broker.url,
        result_backend=broker.url,
        cache_url=faults_url,
        state_url=faults_url,
        config_path=str(tmp_path / "cl.toml"),
    )
    producer = build_pipeline(settings)
    web = create_webhook_app(producer, settings).test_client()
    path = "/webhook/ringcentral"
    client = redis.Redis.from_url(broker.url)
    try:
        accepted = web.post(path, data=fixture_event("sms_inbound", "before-the-outage"))
        assert accepted.status_code == 200 and accepted.get_json()["actions"] == ["enqueued"]

        broker.stop()  # the append-only file stays in its directory
        during = fixture_event("inbound_ringing", "during-the-outage")
        started = time.monotonic()
        refused = web.post(path, data=during)
        assert refused.status_code == 503 and refused.headers.get("Retry-After")
        assert time.monotonic() - started < 5  # fails fast: RingCentral must not time out
        assert web.get("/healthz").status_code == 503

        broker.start()  # same port, same data; the webhook is not restarted
        assert wait_for(lambda: web.get("/healthz").status_code == 200, 10)
        redelivered = web.post(path, data=during)  # RingCentral delivers it again
        assert redelivered.status_code == 200
        assert redelivered.get_json()["actions"] == ["enqueued"], redelivered.get_json()
        # Nothing accepted is lost: the job accepted before the outage survived it.
        phones = queued_phones(client)
    finally:
        client.close()
        producer.app.close()
    assert phones == sorted(["+14155550177", "+14155550100"]), phones
    figure("webhook_broker_outage", answered_503=1, accepted_lost=2 - len(phones))
