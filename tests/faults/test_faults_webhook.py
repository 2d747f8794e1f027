"""The webhook under attack, served by the real command (gunicorn, text logs): a wrong
Verification-Token, an oversized body and a body that is not JSON are refused, and nothing a
request carries (names, numbers, subjects, tokens, headers, raw bodies) reaches the logs."""

from __future__ import annotations

import copy
import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from localredis import free_port
from tests.conftest import EXAMPLES, ROOT, live
from tests.faults.faultkit import Proc, base_env, figure

pytestmark = pytest.mark.faults

TOKEN = "wh-verif-token-51c2e8"
CANARY = "wh-CANARY-7d3a0f"  # request content that must never be logged
CANARY_NUMBER = "+14155557913"  # a valid number that appears nowhere else
FIXTURES = ROOT / "tests" / "fixtures" / "ringcentral"
PATH = "/webhook/ringcentral"
MAX_BODY_BYTES = 256 * 1024  # INTERFACE: a body this large is refused (producers/webhook.py)


def fixture(name: str, uuid: str) -> dict[str, Any]:
    data: dict[str, Any] = live(json.loads((FIXTURES / f"{name}.json").read_text()))
    data["uuid"] = uuid  # a live event (eventTime now), not a stale recording
    return copy.deepcopy(data)


@pytest.fixture
def webhook(tmp_path: Path, faults_url: str) -> Iterator[tuple[str, Proc]]:
    (tmp_path / "contacts.json").write_bytes((EXAMPLES / "contacts.json").read_bytes())
    (tmp_path / "cl.toml").write_bytes((EXAMPLES / "contact-lookup.toml").read_bytes())
    port = free_port()
    env = base_env(
        REDIS_URL=faults_url,
        CONTACT_LOOKUP_CONFIG=str(tmp_path / "cl.toml"),
        RC_VERIFICATION_TOKEN=TOKEN,
        LOG_FORMAT="text",
    )
    proc = Proc(
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
        env,
        tmp_path,
        "webhook",
    )
    base = f"http://127.0.0.1:{port}"

    def up() -> bool:
        try:
            return requests.get(f"{base}/healthz", timeout=1).status_code == 200
        except requests.RequestException:
            return False

    try:
        proc.launch().wait_until(up, 30)
        yield base, proc
    finally:
        proc.stop()


def post(base: str, body: bytes, token: str | None = TOKEN, **headers: str) -> requests.Response:
    assert base.startswith("http://127.0.0.1:")
    h = {"Content-Type": "application/json", **headers}
    if token is not None:
        h["Verification-Token"] = token
    return requests.post(base + PATH, data=body, headers=h, timeout=10)


def test_the_webhook_refuses_bad_requests_and_logs_no_request_content(
    webhook: tuple[str, Proc],
) -> None:
    base, proc = webhook
    ringing = fixture("inbound_ringing", f"uuid-ringing-{free_port()}")
    ringing["body"]["parties"][0]["from"] = {"phoneNumber": CANARY_NUMBER, "name": CANARY}
    sms = fixture("sms_inbound", f"uuid-sms-{free_port()}")
    sms["body"]["subject"] = f"meet me at {CANARY}"
    sms["body"]["from"]["name"] = CANARY
    unknown = fixture("unknown_event", f"uuid-unknown-{free_port()}")
    unknown["event"] = f"/restapi/v1.0/account/~/{CANARY}"
    unknown["body"] = {"note": CANARY}
    shortcode = fixture("sms_short_code", f"uuid-short-{free_port()}")
    shortcode["body"]["from"]["phoneNumber"] = f"{CANARY}-not-a-number"
    refusals = {
        "wrong token": (post(base, json.dumps(ringing).encode(), token=f"{CANARY}-guess"), 401),
        "no token": (post(base, json.dumps(ringing).encode(), token=None), 401),
        "oversized": (post(base, b'{"x": "' + CANARY.encode() * 20000 + b'"}'), 413),
        "not json": (post(base, f"<xml>{CANARY}</xml>".encode()), 400),
        "truncated json": (post(base, json.dumps(ringing).encode()[:-7]), 400),
        "not an object": (post(base, json.dumps([CANARY]).encode()), 400),
    }
    for what, (response, status) in refusals.items():
        assert response.status_code == status, (what, response.status_code, response.text)
        assert CANARY not in response.text, what  # nor echoed back
    assert len(CANARY.encode()) * 20000 > MAX_BODY_BYTES

    accepted = {
        "ringing": post(base, json.dumps(ringing).encode(), **{"X-Trace": CANARY}),
        "sms": post(base, json.dumps(sms).encode()),
        "unknown": post(base, json.dumps(unknown).encode()),
        "short code": post(base, json.dumps(shortcode).encode()),
    }
    for what, response in accepted.items():
        assert response.status_code == 200, (what, response.text)
    assert accepted["ringing"].json()["actions"] == ["enqueued"]
    assert accepted["unknown"].json()["actions"] == ["skipped"]
    handshake = requests.post(
        base + PATH, data=b"", headers={"Validation-Token": CANARY}, timeout=10
    )
    assert handshake.status_code == 200 and handshake.headers["Validation-Token"] == CANARY

    proc.stop()  # flush and close: everything it logged is in the files now
    lines = proc.log_lines()
    assert any("ringcentral" in line for line in lines), "the webhook logged nothing"
    leaks = [
        line
        for line in lines
        if CANARY in line or CANARY_NUMBER in line or CANARY_NUMBER[2:] in line or TOKEN in line
    ]
    figure(
        "webhook_requests",
        refused=len(refusals),
        accepted=len(accepted) + 1,
        log_lines_scanned=len(lines),
        request_content_in_logs=len(leaks),
    )
    assert not leaks, leaks[:5]


def test_a_forged_uuid_cannot_forge_log_lines(webhook: tuple[str, Proc]) -> None:
    """A delivery's uuid is logged; a newline in it must not start a line of its own."""
    base, proc = webhook
    forged = "FORGED-LINE ERROR contact_lookup.webhook: all tokens leaked"
    event = fixture("inbound_ringing", f"u-{free_port()}\n{forged}")
    response = post(base, json.dumps(event).encode())
    assert response.status_code == 200
    proc.stop()
    assert not [line for line in proc.log_lines() if line.startswith("FORGED-LINE")]
