"""Secret hygiene: one canary string is every CRM token, the webhook's verification token and
the password of the Redis that is the broker (the result backend too; on a RabbitMQ run,
``make test-amqp``, the broker is RabbitMQ and that Redis the result backend only). The whole
pipeline runs (the webhook under gunicorn, two workers
with JSON and text logs, every connector against its simulator with debug traces, failures
and retries included, Flower), then every Redis key and value, Flower's API and every captured
log line is searched: the canary must be nowhere.
"""

from __future__ import annotations

import json
import shutil
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
import requests

from contact_lookup.core.request import LookupRequest
from contact_lookup.settings import Settings
from localredis import EmbeddedRedis, free_port
from tasks.celery_app import create_app
from tasks.enqueue import enqueue
from tests.conftest import AMQP_BROKER_URL, EXAMPLES, ROOT, live
from tests.fakecrm import wait_for
from tests.faults.faultkit import (
    CONTACTS,
    META_PREFIX,
    Proc,
    WorkerProcess,
    available_crms,
    base_env,
    figure,
    metas,
    quick_drip,
    scan_redis,
    simulator_class,
    write_connections,
)

pytestmark = pytest.mark.faults

CANARY = "cnry7Q3xZ9p2LmK8"  # URL-safe: it is the broker's Redis password too
# A second canary, the token of one connection under a variable whose name says nothing of
# secrets: redaction must come from the configured token_env, not from name suffixes.
ODD_CANARY, ODD_ENV = "oddc4Rw8Jm2NxB6", "CRM_ACCESS_CREDENTIAL"
FLOWER_AUTH = ("ops", "flower-faults-pw")
FIXTURES = ROOT / "tests" / "fixtures" / "ringcentral"
EVENTS = ["inbound_ringing", "disconnected", "sms_inbound", "internal_call"]
CRMS = available_crms()
NUMBER = "+14155550123"
RETRIED = "+14155550188"


@pytest.fixture
def broker() -> Iterator[EmbeddedRedis]:
    with EmbeddedRedis(password=CANARY) as server:
        yield server


def get(url: str, **kw: Any) -> requests.Response:
    assert url.startswith("http://127.0.0.1:")
    return requests.get(url, timeout=5, **kw)


def up(url: str) -> bool:
    try:
        return get(url).status_code == 200
    except requests.RequestException:
        return False


def test_the_canary_is_nowhere(
    tmp_path: Path, faults_url: str, faults_redis: redis.Redis, broker: EmbeddedRedis
) -> None:
    odd_crm = CRMS[0]
    sims = {
        crm: quick_drip(
            simulator_class(crm)(CONTACTS, token=ODD_CANARY if crm == odd_crm else CANARY)
        ).start()
        for crm in CRMS
    }
    procs: list[Proc] = []
    try:
        tables: dict[str, dict[str, Any]] = {
            "demo": {"crm": "json", "contacts": "contacts.json", "rc_account": "809646016"}
        }
        for crm, sim in sims.items():
            table = {**sim.connection(), "rc_account": "canary"}
            if crm == odd_crm:
                table["token_env"] = ODD_ENV
            tables[crm] = table
            closed = f"http://127.0.0.1:{free_port()}"
            tables[f"{crm}_refused"] = {**table, "base_url": closed}
        shutil.copy(EXAMPLES / "contacts.json", tmp_path / "contacts.json")
        toml = write_connections(tmp_path / "cl.toml", tables, default="demo")
        env = base_env(
            REDIS_URL=faults_url,
            CACHE_URL=faults_url,
            STATE_URL=faults_url,
            BROKER_URL=AMQP_BROKER_URL or broker.url,
            RESULT_BACKEND=broker.url,
            CONTACT_LOOKUP_CONFIG=str(toml),
            RC_VERIFICATION_TOKEN=CANARY,
            CALL_POP_DEADLINE="3",
            CRM_HTTP_TIMEOUT="1",
            **{sim.token_env: CANARY for crm, sim in sims.items() if crm != odd_crm},
            **{ODD_ENV: ODD_CANARY},
        )
        json_worker = WorkerProcess(
            {**env, "LOG_FORMAT": "json"}, tmp_path, "json-worker", queues="call_pop"
        )
        text_worker = WorkerProcess(
            {**env, "LOG_FORMAT": "text"},
            tmp_path,
            "text-worker",
            queues="call_log,message_log,relookup",
        )
        flower_port, webhook_port = free_port(), free_port()
        flower = Proc(
            [
                sys.executable,
                "-m",
                "celery",
                "-A",
                "worker",
                "flower",
                f"--port={flower_port}",
                "--address=127.0.0.1",
                f"--basic-auth={FLOWER_AUTH[0]}:{FLOWER_AUTH[1]}",
            ],
            env,
            tmp_path,
            "flower",
        )
        webhook = Proc(
            [
                sys.executable,
                "-m",
                "producers.cli",
                "webhook",
                "--host",
                "127.0.0.1",
                "--port",
                str(webhook_port),
                "--workers",
                "1",
                "--threads",
                "4",
            ],
            {**env, "LOG_FORMAT": "json"},
            tmp_path,
            "webhook",
        )
        procs += [json_worker, text_worker, flower, webhook]
        for proc in procs:
            proc.launch()
        json_worker.wait_ready()
        text_worker.wait_ready()
        flower_url, webhook_url = (
            f"http://127.0.0.1:{flower_port}",
            f"http://127.0.0.1:{webhook_port}",
        )
        flower.wait_until(lambda: up(f"{flower_url}/healthcheck"))
        webhook.wait_until(lambda: up(f"{webhook_url}/healthz"))

        # The work: every connector, with debug traces, a retried fault and a dead CRM.
        app = create_app(
            Settings(
                redis_url=faults_url,
                cache_url=faults_url,
                state_url=faults_url,
                broker_url=AMQP_BROKER_URL or broker.url,
                result_backend=broker.url,
                config_path=str(toml),
                call_pop_deadline_s=3,
            )
        )
        ids: list[str] = []
        try:
            for crm, sim in sims.items():
                sim.inject("503")
                ids.append(enqueue(app, crm, LookupRequest(RETRIED, "call_log", debug=True)).id)
                ids.append(enqueue(app, crm, LookupRequest(NUMBER, "call_pop", debug=True)).id)
                ids.append(enqueue(app, f"{crm}_refused", LookupRequest(NUMBER, "call_pop")).id)
            ids.append(enqueue(app, "demo", LookupRequest(NUMBER, "relookup", debug=True)).id)
        finally:
            app.close()
        hook = f"{webhook_url}/webhook/ringcentral"
        for name in EVENTS:
            # re-dated to now: a stale (old) telephony event would give no job
            body = json.dumps(live(json.loads((FIXTURES / f"{name}.json").read_text()))).encode()
            answer = requests.post(
                hook, data=body, headers={"Verification-Token": CANARY}, timeout=5
            )
            assert answer.status_code == 200, answer.text
        refused = requests.post(
            hook, data=b"{}", headers={"Verification-Token": "wrong"}, timeout=5
        )
        assert refused.status_code == 401

        broker_client = redis.Redis.from_url(broker.url)
        try:
            # Mid-run, while jobs wait to be retried, the broker holds their retry state:
            # every RETRY meta seen is kept, and the first sighting triggers a full scan.
            retry_metas: set[bytes] = set()
            mid: list[tuple[int, int, list[str]]] = []

            def progress() -> bool:
                raws = broker_client.mget([META_PREFIX + t for t in ids])
                states = [json.loads(r)["status"] if r else None for r in raws]
                retrying = {r for r, s in zip(raws, states, strict=True) if s == "RETRY"}
                retry_metas.update(retrying)  # type: ignore[arg-type]
                if retrying and not mid:
                    mid.extend(
                        [scan_redis(broker_client, CANARY), scan_redis(faults_redis, CANARY)]
                    )
                return all(s == "SUCCESS" for s in states)

            assert wait_for(progress, 30), "not every job finished"
            assert retry_metas and mid, "no job was seen retrying: failure paths not exercised"
            done = metas(broker_client, ids)
            outcomes = [done[t]["result"] for t in ids]
            # The canary did its job: every CRM accepted it, and the dead ones failed.
            assert sum(r["successful"] for r in outcomes) == 2 * len(sims) + 1
            assert all(r["debugTrace"] for r in outcomes if "debugTrace" in r)

            def flower_saw_all() -> bool:
                resp = get(f"{flower_url}/api/tasks", auth=FLOWER_AUTH)
                return resp.ok and all(
                    resp.json().get(t, {}).get("state") in ("SUCCESS", "FAILURE") for t in ids
                )

            assert wait_for(flower_saw_all, 20), "Flower never saw every task finish"
            flower_pages = [
                get(f"{flower_url}/api/tasks", auth=FLOWER_AUTH).text,
                get(f"{flower_url}/api/workers?refresh=1", auth=FLOWER_AUTH).text,
            ]
            assert "json-worker@" in flower_pages[1] and "text-worker@" in flower_pages[1]
            end = [scan_redis(client, canary) for client in (broker_client, faults_redis)
                   for canary in (CANARY, ODD_CANARY)]  # fmt: skip
        finally:
            broker_client.close()
    finally:
        for proc in procs:
            proc.stop()
        for sim in sims.values():
            sim.stop()

    ODD = ODD_CANARY.encode()
    log_lines = [(p.name, line) for p in procs for line in p.log_lines()]
    assert any("ready." in line for _, line in log_lines)  # the logs were captured
    found = {
        "redis (mid-run)": [k for _, _, hits in mid for k in hits],
        "redis (retry states)": [
            m[:120].decode() for m in retry_metas if CANARY.encode() in m or ODD in m
        ],
        "redis (end)": [k for _, _, hits in end for k in hits],
        "flower": [i for i, p in enumerate(flower_pages) if CANARY in p or ODD_CANARY in p],
        "logs": [
            f"{name}: {line[:200]}"
            for name, line in log_lines
            if CANARY in line or ODD_CANARY in line
        ],
    }
    leaks = {where: hits for where, hits in found.items() if hits}
    figure(
        "secrets",
        secrets_found=sum(len(h) for h in found.values()),
        redis_keys_scanned=sum(k for k, _, _ in mid + end),
        retry_states_scanned=len(retry_metas),
        redis_values_scanned=sum(v for _, v, _ in mid + end),
        flower_bytes_scanned=sum(len(p) for p in flower_pages),
        log_lines_scanned=len(log_lines),
        jobs=len(ids) + len(EVENTS),
        connectors=len(sims) + 1,
    )
    assert not leaks, f"the canary leaked: {json.dumps(leaks, indent=1)[:4000]}"


def test_the_scan_finds_a_planted_canary(faults_redis: redis.Redis) -> None:
    """The scanner itself: a canary hidden in each Redis type is found."""
    faults_redis.set("plain", f"x{CANARY}x")
    faults_redis.rpush("list", "a", CANARY)
    faults_redis.hset("hash", mapping={"f": "v", CANARY: "v2"})
    faults_redis.sadd("set", "m", f"[{CANARY}]")
    faults_redis.zadd("zset", {f"{CANARY}z": 1.0})
    faults_redis.set(f"key:{CANARY}", "v")
    faults_redis.set("clean", "nothing to see")
    keys, values, hits = scan_redis(faults_redis, CANARY)
    assert keys == 7 and values > keys
    assert sorted(hits) == sorted(["plain", "list", "hash", "set", "zset", f"key:{CANARY}"])
