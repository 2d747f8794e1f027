"""Every event -> job rule and every skip reason, through ``contact-lookup replay`` against a
real Redis; jobs are read back from the queues' Redis lists (no worker needed here)."""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

import pytest
import redis

from producers.cli import main
from tests.conftest import live, purge_amqp_queues
from tests.producers.conftest import (
    DEMO_EXT,
    SALES_EXT,
    all_queued,
    fixture,
    queued,
    replay,
    variant,
    write_config,
)

Capsys = pytest.CaptureFixture[str]
KEYS = ["uuid", "action", "purpose", "phoneNumber", "reason", "taskId"]


def only(lines: list[dict[str, Any]]) -> dict[str, Any]:
    assert len(lines) == 1, lines
    return lines[0]


def test_inbound_ringing_enqueues_one_call_pop_for_the_caller(
    env: Path, client: redis.Redis, capsys: Capsys, tmp_path: Path
) -> None:
    code, lines = replay(capsys, tmp_path, [fixture("inbound_ringing")])
    line = only(lines)
    assert code == 0 and list(line) == KEYS
    assert line["action"] == "enqueued" and line["purpose"] == "call_pop"
    assert (
        line["phoneNumber"] == "+14155550100" and line["uuid"] == fixture("inbound_ringing")["uuid"]
    )
    jobs = all_queued(client)
    assert [j["id"] for j in jobs["call_pop"]] == [line["taskId"]]
    assert not jobs["call_log"] and not jobs["message_log"]
    job = jobs["call_pop"][0]
    assert job["kwargs"] == {
        "connection": "demo",
        "phoneNumber": "+14155550100",
        "purpose": "call_pop",
        "callPop": {
            "rcAccountId": "809646016",
            "rcExtensionId": DEMO_EXT,
            "telephonySessionId": "s-a0d7d55c1e8b4N18f2a1c3d7e9A0001",
        },
    }
    assert job["expires"]  # a call pop is dropped once the phone has stopped ringing


def test_outbound_ringing_pops_only_where_outbound_pop_is_on(
    env: Path, client: redis.Redis, capsys: Capsys, tmp_path: Path
) -> None:
    _, lines = replay(capsys, tmp_path, [fixture("outbound_ringing")])
    line = only(lines)
    assert line["action"] == "skipped" and line["purpose"] == "call_pop"
    assert "outbound_pop = false" in line["reason"] and "'demo'" in line["reason"]
    assert not queued(client, "call_pop")

    # the same call made by the sales extension, whose connection has outbound_pop = true
    sales = variant(
        "outbound_ringing",
        uuid="b-1",
        event=f"/restapi/v1.0/account/809646016/extension/{SALES_EXT}/telephony/sessions",
        body__parties__0__extensionId=SALES_EXT,
    )
    _, lines = replay(capsys, tmp_path, [sales])
    line = only(lines)
    assert (line["action"], line["phoneNumber"]) == ("enqueued", "+14155550123")
    job = only(queued(client, "call_pop"))
    assert job["kwargs"]["connection"] == "sales"
    assert job["kwargs"]["phoneNumber"] == "+14155550123"  # the callee, not our own number
    assert job["kwargs"]["callPop"]["rcExtensionId"] == SALES_EXT


def test_a_call_answered_then_ended_is_logged_once(
    env: Path, client: redis.Redis, capsys: Capsys, tmp_path: Path
) -> None:
    _, lines = replay(
        capsys, tmp_path, [fixture("inbound_ringing"), fixture("answered"), fixture("disconnected")]
    )
    assert [(x["action"], x["purpose"]) for x in lines] == [
        ("enqueued", "call_pop"),
        ("skipped", None),
        ("enqueued", "call_log"),
    ]
    assert "status Answered" in lines[1]["reason"]
    log = only(queued(client, "call_log"))
    assert log["id"] == lines[2]["taskId"] and log["expires"] is None
    token = {k: log["kwargs"].pop(k) for k in ("supersedeKey", "decisionVersion")}
    assert log["kwargs"] == {
        "connection": "demo",
        "phoneNumber": "+14155550100",
        "purpose": "call_log",
        "rcExtensionId": DEMO_EXT,  # the logged party: its own CRM grant, if it has one
    }
    # the settle window's supersede token (README "Event rules")
    assert token["supersedeKey"].endswith(":once:call_log:s-a0d7d55c1e8b4N18f2a1c3d7e9A0001")
    assert isinstance(token["decisionVersion"], int)


@pytest.mark.parametrize(
    ("name", "reason"),
    [
        ("transfer_disconnected", "disconnected by BlindTransfer: the call goes on elsewhere"),
        ("gone", "status Gone: the call goes on elsewhere"),
    ],
)
def test_transfers_are_not_logged(
    env: Path, client: redis.Redis, capsys: Capsys, tmp_path: Path, name: str, reason: str
) -> None:
    _, lines = replay(capsys, tmp_path, [fixture(name)])
    line = only(lines)
    assert line["action"] == "skipped" and line["purpose"] == "call_log"
    assert reason in line["reason"]
    assert not queued(client, "call_log")


@pytest.mark.parametrize("why", ["AttendedTransfer", "Pickup", "CallSwitch"])
def test_other_transfer_reasons_are_not_logged_either(
    env: Path, client: redis.Redis, capsys: Capsys, tmp_path: Path, why: str
) -> None:
    event = variant(
        "transfer_disconnected",
        uuid=f"t-{why}",
        body__parties__1__status={"code": "Disconnected", "reason": why},
    )
    _, lines = replay(capsys, tmp_path, [event])
    assert why in only(lines)["reason"] and not queued(client, "call_log")


def test_internal_call_is_an_extension_lookup_where_enabled(
    env: Path, client: redis.Redis, capsys: Capsys, tmp_path: Path
) -> None:
    _, lines = replay(capsys, tmp_path, [fixture("internal_call")])
    # only the subscriber's own party counts: the caller's extension party is not ours
    line = only(lines)
    assert (line["action"], line["phoneNumber"]) == ("enqueued", "102")
    job = only(queued(client, "call_pop"))
    assert job["kwargs"]["isExtension"] is True and job["kwargs"]["phoneNumber"] == "102"

    off = variant(
        "internal_call",
        uuid="i-2",
        event=f"/restapi/v1.0/account/809646016/extension/{SALES_EXT}/telephony/sessions",
        body__telephonySessionId="s-other",
        body__parties__1__extensionId=SALES_EXT,
    )
    _, lines = replay(capsys, tmp_path, [off])
    line = only(lines)
    assert line["action"] == "skipped"
    assert "extension lookup is off for connection 'sales'" in line["reason"]
    assert len(queued(client, "call_pop")) == 1


def test_extension_number_field_is_accepted(
    env: Path, client: redis.Redis, capsys: Capsys, tmp_path: Path
) -> None:
    event = variant(
        "inbound_ringing",
        uuid="x-1",
        body__parties__0__from={"phoneNumber": "+16505550102", "extensionNumber": "102"},
    )
    _, lines = replay(capsys, tmp_path, [event])
    assert only(lines)["phoneNumber"] == "102"
    assert only(queued(client, "call_pop"))["kwargs"]["isExtension"] is True


@pytest.mark.parametrize(
    "caller", [{"name": "Anonymous"}, {"phoneNumber": None}, {"phoneNumber": ""}, None]
)
def test_anonymous_callers_are_skipped(
    env: Path, client: redis.Redis, capsys: Capsys, tmp_path: Path, caller: Any
) -> None:
    event = variant("anonymous_caller", body__parties__0__from=caller)
    _, lines = replay(capsys, tmp_path, [event])
    line = only(lines)
    assert line["action"] == "skipped" and line["reason"].startswith("anonymous caller")
    assert not queued(client, "call_pop")


@pytest.mark.parametrize("number", ["+1 555", "*67", "(415) 555-01999"])
def test_numbers_that_do_not_parse_are_skipped_with_the_invalid_number_message(
    env: Path, client: redis.Redis, capsys: Capsys, tmp_path: Path, number: str
) -> None:
    event = variant("inbound_ringing", body__parties__0__from={"phoneNumber": number})
    _, lines = replay(capsys, tmp_path, [event])
    line = only(lines)
    assert line["action"] == "skipped" and line["phoneNumber"] == number
    assert f"{number!r} is not a valid phone number" in line["reason"]
    assert "no CRM lookup was made" in line["reason"]
    assert not queued(client, "call_pop")


def test_an_update_older_than_the_newest_seen_is_ignored(
    env: Path, client: redis.Redis, capsys: Capsys, tmp_path: Path
) -> None:
    # Answered (sequence 3) arrives before the Setup (sequence 1) of the same party
    _, lines = replay(capsys, tmp_path, [fixture("answered"), fixture("out_of_order_setup")])
    assert lines[1]["action"] == "skipped"
    assert lines[1]["reason"].startswith(
        "out of order: sequence 1 is older than the newest seen for this party"
    )
    assert not queued(client, "call_pop")


def test_a_call_first_seen_when_it_has_ended_is_logged_once(
    env: Path, client: redis.Redis, capsys: Capsys, tmp_path: Path
) -> None:
    """Its early events were never received: the call is still logged, once, even when the
    same event comes again from another subscription (another uuid)."""
    ended = fixture("stale_disconnected")
    copy_from_account_subscription = {**ended, "uuid": "other-subscription"}
    _, lines = replay(capsys, tmp_path, [ended, copy_from_account_subscription])
    assert [x["action"] for x in lines] == ["enqueued", "skipped"]
    assert lines[1]["reason"].startswith("already done: a call log for this call")
    assert [j["kwargs"]["phoneNumber"] for j in queued(client, "call_log")] == ["+442079460958"]


def test_an_event_older_than_the_horizon_is_stale_by_its_event_time(
    env: Path, client: redis.Redis, capsys: Capsys, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Stale is measured by eventTime against the clock (EVENT_MAX_AGE), not "never seen live"."""
    monkeypatch.setenv("EVENT_MAX_AGE", "3600")
    old = live(fixture("inbound_ringing"), age_s=3700)
    fresh = live(variant("disconnected", uuid="fresh-one"), age_s=3500)
    path = tmp_path / "events.jsonl"
    path.write_text(json.dumps(old) + "\n" + json.dumps(fresh) + "\n")
    capsys.readouterr()
    assert main(["replay", str(path)]) == 0
    lines = [json.loads(x) for x in capsys.readouterr().out.splitlines()]
    assert lines[0]["action"] == "skipped" and lines[0]["reason"].startswith("stale:")
    assert "3600 s horizon (EVENT_MAX_AGE)" in lines[0]["reason"]
    assert lines[1]["action"] == "enqueued" and lines[1]["purpose"] == "call_log"
    assert not queued(client, "call_pop")


def test_duplicate_deliveries_are_recognised_by_uuid(
    env: Path, client: redis.Redis, capsys: Capsys, tmp_path: Path
) -> None:
    _, lines = replay(capsys, tmp_path, [fixture("inbound_ringing")] * 3)
    assert [x["action"] for x in lines] == ["enqueued", "duplicate", "duplicate"]
    # a second producer process (another replay) sees the same deliveries as duplicates
    _, again = replay(capsys, tmp_path, [fixture("inbound_ringing")])
    assert only(again)["action"] == "duplicate"
    assert len(queued(client, "call_pop")) == 1


def test_the_same_change_from_two_subscriptions_pops_once(
    env: Path, client: redis.Redis, capsys: Capsys, tmp_path: Path
) -> None:
    ring = fixture("inbound_ringing")
    account_level = {
        **ring,
        "uuid": "account-level-copy",
        "event": "/restapi/v1.0/account/809646016/telephony/sessions",
    }
    _, lines = replay(capsys, tmp_path, [ring, account_level])
    assert lines[1]["action"] == "skipped" and lines[1]["reason"].startswith("already done")
    assert len(queued(client, "call_pop")) == 1


def test_account_level_event_with_two_ringing_agents_gives_two_lines(
    env: Path, client: redis.Redis, capsys: Capsys, tmp_path: Path
) -> None:
    _, lines = replay(capsys, tmp_path, [fixture("account_level_queue_ringing")])
    assert [(x["action"], x["phoneNumber"]) for x in lines] == [
        ("enqueued", "+442079460958"),
        ("enqueued", "+442079460958"),
    ]
    jobs = queued(client, "call_pop")
    assert sorted(
        (j["kwargs"]["connection"], j["kwargs"]["callPop"]["rcExtensionId"]) for j in jobs
    ) == [("demo", DEMO_EXT), ("sales", SALES_EXT)]


def test_unknown_extension_without_default_is_skipped(
    env: Path, client: redis.Redis, capsys: Capsys, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    other = tmp_path / "nodefault"
    other.mkdir()
    monkeypatch.setenv(
        "CONTACT_LOOKUP_CONFIG", str(write_config(other, f'"{SALES_EXT}" = "sales"\n'))
    )
    _, lines = replay(capsys, tmp_path, [fixture("inbound_ringing"), fixture("sms_inbound")])
    assert [x["action"] for x in lines] == ["skipped", "skipped"]
    assert all(f"no connection for extension {DEMO_EXT}" in x["reason"] for x in lines)
    assert not any(all_queued(client).values())


@pytest.mark.parametrize(
    ("name", "number", "kind"),
    [
        ("sms_inbound", "+14155550177", "SMS"),
        ("sms_outbound_group", "+442079460958", "SMS"),  # the target of the group, not the first
        ("fax_inbound", "+14155550123", "Fax"),  # "(415)555-0123" normalised
    ],
)
def test_sms_and_fax_become_message_logs(
    env: Path,
    client: redis.Redis,
    capsys: Capsys,
    tmp_path: Path,
    name: str,
    number: str,
    kind: str,
) -> None:
    _, lines = replay(capsys, tmp_path, [fixture(name)])
    line = only(lines)
    assert line == {
        "uuid": fixture(name)["uuid"],
        "action": "enqueued",
        "purpose": "message_log",
        "phoneNumber": number,
        "reason": None,
        "taskId": line["taskId"],
        "messageType": kind,
    }
    job = only(queued(client, "message_log"))
    assert job["kwargs"] == {
        "connection": "demo",
        "phoneNumber": number,
        "purpose": "message_log",
        "rcExtensionId": DEMO_EXT,  # the event path's extension
    }


def test_outbound_message_without_target_uses_the_first_recipient(
    env: Path, client: redis.Redis, capsys: Capsys, tmp_path: Path
) -> None:
    event = variant(
        "sms_outbound_group",
        body__to=[{"phoneNumber": "+14155550100"}, {"phoneNumber": "+442079460958"}],
    )
    _, lines = replay(capsys, tmp_path, [event])
    assert only(lines)["phoneNumber"] == "+14155550100"


@pytest.mark.parametrize(
    ("event", "reason"),
    [
        (fixture("sms_short_code"), "'12345' is a short code, not a phone number"),
        (fixture("pager_message"), "Pager message: only SMS and fax are logged"),
        (variant("sms_inbound", body__type="VoiceMail"), "VoiceMail message"),
        (variant("sms_inbound", body__from={}), "anonymous sender"),
        (
            fixture("message_store_change"),
            "message-store change event: it carries no phone numbers",
        ),
        (
            fixture("unknown_event"),
            "unknown event '/restapi/v1.0/account/809646016/extension/1474839016/presence",
        ),
        ({"uuid": "u-1", "event": "/restapi/v1.0/glip/posts", "body": {}}, "unknown event"),
        ({"uuid": "u-2"}, "unknown event '(no event path)'"),
        (
            {"uuid": "u-3", "event": fixture("inbound_ringing")["event"], "body": {"parties": []}},
            "telephony event without parties",
        ),
        (
            variant("inbound_ringing", body__parties__0__extensionId=None),
            "no party of the subscriber's own extension",
        ),
        (variant("inbound_ringing", body__parties__0__status={}), "status (missing)"),
        (variant("inbound_ringing", body__parties__0__direction=None), "party direction"),
    ],
)
def test_events_without_a_job_are_skipped_with_a_reason(
    env: Path, client: redis.Redis, capsys: Capsys, tmp_path: Path, event: Any, reason: str
) -> None:
    code, lines = replay(capsys, tmp_path, [event])
    line = only(lines)
    assert code == 0 and line["action"] == "skipped" and reason in line["reason"]
    assert not any(all_queued(client).values())


def test_malformed_lines_are_reported_and_the_replay_goes_on(
    env: Path, client: redis.Redis, capsys: Capsys, tmp_path: Path
) -> None:
    code, lines = replay(capsys, tmp_path, ["{not json", "[1, 2]", "", fixture("inbound_ringing")])
    assert code == 0
    assert [(x["action"], x.get("line")) for x in lines] == [
        ("skipped", 1),
        ("skipped", 2),
        ("enqueued", None),
    ]
    assert lines[0]["reason"].startswith("line 1: not valid JSON")
    assert lines[1]["reason"] == "line 2: not a notification (a JSON object)"
    assert len(queued(client, "call_pop")) == 1


def test_a_whole_call_delivered_twice_in_any_order_pops_once_and_logs_once(
    env: Path, client: redis.Redis, capsys: Capsys, tmp_path: Path
) -> None:
    stream = [
        fixture(n) for n in ("out_of_order_setup", "inbound_ringing", "answered", "disconnected")
    ]
    # the account-level subscription delivers every change again, with its own uuids
    copies = [
        {
            **e,
            "uuid": "acct-" + e["uuid"],
            "event": "/restapi/v1.0/account/809646016/telephony/sessions",
        }
        for e in stream
    ]
    for seed in range(4):
        client.flushdb()
        purge_amqp_queues()  # the broker too, on a RabbitMQ run
        rest = stream[1:] + copies + stream  # plus plain redeliveries of every uuid
        random.Random(seed).shuffle(rest)
        # the phone rings first; every other delivery arrives in any order
        _, lines = replay(capsys, tmp_path, [stream[0], *rest])
        jobs = all_queued(client)
        assert len(jobs["call_pop"]) == 1 and len(jobs["call_log"]) == 1, (seed, lines)
        assert [x["action"] for x in lines].count("enqueued") == 2
        assert [x["action"] for x in lines].count("duplicate") == 4


def test_a_cached_call_pop_is_answered_at_once_and_published(
    env: Path, client: redis.Redis, capsys: Capsys, tmp_path: Path
) -> None:
    assert main(["lookup", "+14155550100", "--connection", "demo", "--local"]) == 0  # caches
    pubsub = client.pubsub(ignore_subscribe_messages=True)
    pubsub.subscribe(f"callpop:809646016:{DEMO_EXT}")
    pubsub.get_message(timeout=1)
    _, lines = replay(capsys, tmp_path, [fixture("inbound_ringing")], "--wait")
    line = only(lines)
    assert line["action"] == "answered-from-cache" and line["taskId"] is None
    assert [c["id"] for c in line["result"]["matchedContactInfo"]] == ["c-1001", "createNewContact"]
    assert line["result"]["extraDataTracking"] == {"isCached": True}
    assert not queued(client, "call_pop")  # no task at all
    message = pubsub.get_message(timeout=2)
    assert message is not None
    assert json.loads(message["data"]) == {
        "telephonySessionId": "s-a0d7d55c1e8b4N18f2a1c3d7e9A0001",
        "phoneNumber": "+14155550100",
        "result": line["result"],
    }
    pubsub.close()


def test_fresh_forgets_the_producer_state(
    env: Path, client: redis.Redis, capsys: Capsys, tmp_path: Path
) -> None:
    replay(capsys, tmp_path, [fixture("inbound_ringing")])
    _, lines = replay(capsys, tmp_path, [fixture("inbound_ringing")], "--fresh")
    assert only(lines)["action"] == "enqueued"
    assert len(queued(client, "call_pop")) == 2


def test_replay_stops_with_exit_1_while_the_broker_is_down_and_resumes_later(
    env: Path, client: redis.Redis, capsys: Capsys, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from localredis import free_port

    monkeypatch.setenv("BROKER_URL", f"redis://127.0.0.1:{free_port()}/0")
    events = [fixture("inbound_ringing"), fixture("sms_inbound")]
    code, lines = replay(capsys, tmp_path, events)
    assert code == 1 and lines == []
    monkeypatch.delenv("BROKER_URL")
    code, lines = replay(capsys, tmp_path, events)
    assert code == 0 and [x["action"] for x in lines] == ["enqueued", "enqueued"]
