"""``contact-lookup watch``: call pops, from the producers' fast path or published by a worker,
printed as JSON lines; ``--extension`` narrows the subscription."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import pytest
import redis

from contact_lookup.core import callpop
from producers.cli import main
from tests.producers.conftest import DEMO_EXT, fixture


def start_watch(capsys: pytest.CaptureFixture[str], *args: str) -> threading.Thread:
    """Run ``watch --count 1`` in a thread; return once it says it is subscribed."""
    capsys.readouterr()
    thread = threading.Thread(target=main, args=(["watch", "--count", "1", *args],), daemon=True)
    thread.start()
    deadline = time.monotonic() + 5
    err = ""
    while "watching callpop:" not in err:
        assert time.monotonic() < deadline, "watch did not subscribe"
        time.sleep(0.02)
        err += capsys.readouterr().err
    return thread


def test_watch_prints_a_call_pop_answered_from_the_cache(
    env: Path, client: redis.Redis, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    assert main(["lookup", "+14155550100", "--connection", "demo", "--local"]) == 0
    events = tmp_path / "events.jsonl"
    events.write_text(json.dumps(fixture("inbound_ringing")) + "\n")
    capsys.readouterr()
    thread = start_watch(capsys)
    assert main(["replay", str(events), "--recorded"]) == 0
    thread.join(5)
    assert not thread.is_alive()
    lines = [json.loads(x) for x in capsys.readouterr().out.splitlines()]
    assert [x["action"] for x in lines if "action" in x] == ["answered-from-cache"]
    printed = [x for x in lines if "rcExtensionId" in x]
    assert len(printed) == 1
    pop = printed[0]
    assert pop["rcAccountId"] == "809646016" and pop["rcExtensionId"] == DEMO_EXT
    assert pop["telephonySessionId"] == "s-a0d7d55c1e8b4N18f2a1c3d7e9A0001"
    assert pop["phoneNumber"] == "+14155550100"
    assert pop["result"]["matchedContactInfo"][0]["name"] == "Ada Lovelace"


def test_watch_extension_only_prints_that_extension(
    env: Path, client: redis.Redis, capsys: pytest.CaptureFixture[str]
) -> None:
    thread = start_watch(capsys, "--extension", "7001")
    callpop.publish(client, "111", "7002", "s-other", "+14155550101", {"successful": True})
    callpop.publish(client, "111", "7001", "s-mine", "+14155550100", {"successful": True})
    thread.join(5)
    assert not thread.is_alive()
    lines = [json.loads(x) for x in capsys.readouterr().out.splitlines()]
    assert lines == [
        {
            "rcAccountId": "111",
            "rcExtensionId": "7001",
            "telephonySessionId": "s-mine",
            "phoneNumber": "+14155550100",
            "result": {"successful": True},
        }
    ]


def test_watch_refuses_a_bad_extension(env: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["watch", "--extension", "1*"]) == 2
    assert "--extension" in capsys.readouterr().err
