"""The webhook receiver over real HTTP: the Flask app under werkzeug's server in a thread,
and once under the real ``contact-lookup webhook`` command (gunicorn)."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from werkzeug.serving import make_server

from contact_lookup.core import keys
from localredis import EmbeddedRedis, free_port
from producers.pipeline import build_pipeline
from producers.webhook import MAX_BODY_BYTES, create_webhook_app
from tests.conftest import FOLLOW_REDIS_URL, ROOT, live
from tests.producers.conftest import fixture, queued, settings_for

TOKEN = "vt-CANARY-8e1f0d2c"
PATH = "/webhook/ringcentral"
Response = tuple[int, dict[str, str], bytes]


def http(
    base: str,
    path: str,
    body: bytes | None = None,
    headers: dict[str, str] | None = None,
    method: str | None = None,
) -> Response:
    assert base.startswith("http://127.0.0.1:")  # only ever the local test server
    request = urllib.request.Request(  # noqa: S310
        base + path,
        data=body,
        headers=headers or {},
        method=method or ("POST" if body is not None else "GET"),
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as r:  # noqa: S310
            return r.status, dict(r.headers), r.read()
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers), e.read()


def post(base: str, event: Any, token: str | None = TOKEN, **headers: str) -> Response:
    data = event if isinstance(event, bytes) else json.dumps(event).encode()
    h = {"Content-Type": "application/json", **headers}
    if token is not None:
        h["Verification-Token"] = token
    return http(base, PATH, data, h)


@pytest.fixture
def serve() -> Iterator[Callable[..., str]]:
    """Start the webhook app (built like the command builds it) on 127.0.0.1:0."""
    servers = []

    def start(settings: Any) -> str:
        producer = build_pipeline(settings)
        producer.recorded = True  # the posted fixtures are 2024 recordings: their own clock
        server = make_server("127.0.0.1", 0, create_webhook_app(producer, settings), threaded=True)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append((server, producer))
        return f"http://127.0.0.1:{server.server_port}"

    yield start
    for server, producer in servers:
        server.shutdown()
        producer.app.close()


@pytest.fixture
def base(serve: Callable[..., str], pr_url: str, config_path: Path) -> str:
    return serve(settings_for(pr_url, config_path, rc_verification_token=TOKEN))


def test_handshake_echoes_the_validation_token(base: str, client: redis.Redis) -> None:
    status, headers, body = http(base, PATH, b"", {"Validation-Token": "d5a1e3f7-handshake"})
    assert status == 200 and headers["Validation-Token"] == "d5a1e3f7-handshake"
    assert headers["Content-Type"] == "application/json" and len(body) < 1024
    assert json.loads(body) == {}
    assert not queued(client, "call_pop")


def test_a_notification_is_enqueued_and_acknowledged(
    base: str, client: redis.Redis, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    event = fixture("inbound_ringing")
    status, _, body = post(base, event)
    assert status == 200 and json.loads(body) == {"uuid": event["uuid"], "actions": ["enqueued"]}
    assert queued(client, "call_pop")[0]["kwargs"]["phoneNumber"] == "+14155550100"
    status, _, body = post(base, event)  # RingCentral delivers it again
    assert status == 200 and json.loads(body)["actions"] == ["duplicate"]
    assert len(queued(client, "call_pop")) == 1
    # the log names the delivery and the action, never the body, a number or the token
    assert f"ringcentral {event['uuid']}: enqueued" in caplog.text
    assert "+14155550100" not in caplog.text and TOKEN not in caplog.text
    assert "ADA LOVELACE" not in caplog.text


@pytest.mark.parametrize("token", [None, "", "vt-CANARY-8e1f0d2X", TOKEN + "x"])
def test_a_missing_or_wrong_verification_token_is_refused(
    base: str, client: redis.Redis, token: str | None
) -> None:
    status, _, body = post(base, fixture("inbound_ringing"), token=token)
    assert status == 401 and "Verification-Token" in json.loads(body)["error"]
    assert not queued(client, "call_pop")
    assert not client.exists(keys.delivery(fixture("inbound_ringing")["uuid"]))


def test_without_a_configured_token_none_is_needed(
    serve: Callable[..., str], pr_url: str, config_path: Path, client: redis.Redis
) -> None:
    base = serve(settings_for(pr_url, config_path))
    status, _, _ = post(base, fixture("sms_inbound"), token=None)
    assert status == 200 and len(queued(client, "message_log")) == 1


@pytest.mark.parametrize("body", [b"{not json", b"\xff\xfe", b"", b"[1, 2]", b'"text"'])
def test_malformed_bodies_get_400(base: str, client: redis.Redis, body: bytes) -> None:
    status, _, _ = post(base, body)
    assert status == 400
    assert not any(queued(client, q) for q in ("call_pop", "call_log", "message_log"))


def test_an_oversized_body_gets_413(base: str, client: redis.Redis) -> None:
    event = fixture("sms_inbound")
    event["body"]["subject"] = "x" * MAX_BODY_BYTES
    status, _, body = post(base, event)
    assert status == 413 and "body over" in json.loads(body)["error"]
    assert not queued(client, "message_log")


def test_an_unknown_event_is_acknowledged_and_skipped(
    base: str, client: redis.Redis, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    event = fixture("unknown_event")
    status, _, body = post(base, event)
    assert status == 200 and json.loads(body)["actions"] == ["skipped"]
    assert f"ringcentral {event['uuid']}: skipped" in caplog.text
    assert "presence" not in caplog.text


def test_healthz(base: str) -> None:
    status, headers, body = http(base, "/healthz")
    assert status == 200 and json.loads(body) == {"redis": "ok", "broker": "ok"}
    assert headers["Content-Type"] == "application/json"


def test_broker_down_gives_503_and_the_redelivery_is_processed_when_it_is_back(
    serve: Callable[..., str], pr_url: str, config_path: Path, client: redis.Redis
) -> None:
    broker = EmbeddedRedis(port=free_port())  # not started yet: nothing listens there
    try:
        base = serve(
            settings_for(pr_url, config_path, rc_verification_token=TOKEN, broker_url=broker.url)
        )
        event = fixture("inbound_ringing")
        started = time.monotonic()
        status, headers, _ = post(base, event)
        assert status == 503 and headers.get("Retry-After")
        assert time.monotonic() - started < 5  # fails fast, well inside RingCentral's wait
        # nothing it set for this delivery is kept, so the redelivery is not a "duplicate"
        assert not client.exists(keys.delivery(event["uuid"]))
        assert not list(client.scan_iter(keys.once("*")))
        status, _, body = http(base, "/healthz")
        assert status == 503 and json.loads(body)["broker"].startswith("unreachable")

        broker.start()
        status, _, body = post(base, event)  # RingCentral's redelivery
        assert status == 200 and json.loads(body)["actions"] == ["enqueued"]
        broker_client = redis.Redis.from_url(broker.url)
        assert [
            j["kwargs"]["phoneNumber"] for j in queued(broker_client, "call_pop", amqp_url=None)
        ] == ["+14155550100"]
        broker_client.close()
        assert http(base, "/healthz")[0] == 200
    finally:
        broker.cleanup()


def test_the_webhook_command_serves_under_gunicorn(
    pr_url: str, config_path: Path, client: redis.Redis
) -> None:
    port = free_port()
    env = {
        **os.environ,
        "REDIS_URL": pr_url,
        "CONTACT_LOOKUP_CONFIG": str(config_path),
        "RC_VERIFICATION_TOKEN": TOKEN,
        "LOG_FORMAT": "json",
    }
    for name in FOLLOW_REDIS_URL:
        env.pop(name, None)
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "producers.cli",
            "webhook",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--workers",
            "1",
            "--threads",
            "4",
        ],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                if http(base, "/healthz")[0] == 200:
                    break
            except OSError:
                pass
            assert proc.poll() is None and time.monotonic() < deadline, "webhook did not start"
            time.sleep(0.1)
        handshake = "hs-" + "7" * 500  # a long token still answers in under 1 KiB in all
        status, headers, body = http(base, PATH, b"", {"Validation-Token": handshake})
        assert status == 200 and headers["Validation-Token"] == handshake
        size = len(b"HTTP/1.1 200 OK\r\n") + len(body)
        size += sum(len(k) + len(v) + 4 for k, v in headers.items()) + 2
        assert size < 1024  # RingCentral counts the headers and the body
        assert post(base, fixture("inbound_ringing"), token="wrong")[0] == 401
        status, _, body = post(base, live(fixture("inbound_ringing")))
        assert status == 200 and json.loads(body)["actions"] == ["enqueued"]
        assert len(queued(client, "call_pop")) == 1
    finally:
        proc.terminate()
        output, _ = proc.communicate(timeout=20)
    text = output.decode()
    assert "gthread" in text  # the threads worker class
    assert TOKEN not in text and "+14155550100" not in text
