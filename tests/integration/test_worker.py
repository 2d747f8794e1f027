"""The find_contact task on a real in-process Celery worker, a real Redis and a fake CRM
over real HTTP: queues, retries on rate limits, deadlines, permanent errors, idempotency."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import redis
from celery.contrib.testing.worker import start_worker
from celery.exceptions import TaskRevokedError
from celery.exceptions import TimeoutError as CeleryTimeoutError
from celery.signals import task_postrun

import tasks.find_contact  # noqa: F401  (registers the shared task)
from contact_lookup.core.request import LookupRequest
from contact_lookup.model.purpose import PURPOSES
from tasks.celery_app import ContactLookupCelery, create_app
from tasks.enqueue import enqueue
from tests.conftest import AMQP_BROKER_URL, settings_for
from tests.fakecrm import SEED, FakeCRM, fake_toml, wait_for

TOKEN = "tok-CANARY-5f0b8c"


@pytest.fixture
def crm() -> Iterator[FakeCRM]:
    with FakeCRM(SEED, token=TOKEN) as sim:
        yield sim


def make_app(
    tmp_path: Path, redis_url: str, crm: FakeCRM, monkeypatch: pytest.MonkeyPatch, **settings: Any
) -> ContactLookupCelery:
    toml = tmp_path / "cl.toml"
    toml.write_text(
        fake_toml(crm, formats="(***) ***-****")
        + fake_toml(crm, name="wrongtoken").replace(crm.token_env, "WRONG_TOKEN")
    )
    monkeypatch.setenv(crm.token_env, crm.token)
    monkeypatch.setenv("WRONG_TOKEN", "not-the-token")
    return create_app(settings_for(redis_url, toml, **settings))


@pytest.fixture
def app(
    tmp_path: Path, redis_url: str, crm: FakeCRM, monkeypatch: pytest.MonkeyPatch
) -> Iterator[ContactLookupCelery]:
    app = make_app(tmp_path, redis_url, crm, monkeypatch, call_pop_deadline_s=5)
    with start_worker(
        app,
        pool="threads",
        concurrency=4,
        perform_ping_check=False,
        queues=list(PURPOSES),
        shutdown_timeout=10,
    ):
        yield app


def lookup(
    app: ContactLookupCelery, number: str, purpose: str = "call_log", **kw: Any
) -> dict[str, Any]:
    result: dict[str, Any] = enqueue(app, "fake", LookupRequest(number, purpose=purpose, **kw)).get(
        timeout=20
    )
    return result


def test_a_lookup_through_each_queue(app: ContactLookupCelery, crm: FakeCRM) -> None:
    for purpose in PURPOSES:
        pending = enqueue(
            app, "fake", LookupRequest("(415) 555-0102", purpose=purpose, force_refresh=True)
        )
        result = pending.get(timeout=10)
        assert result["successful"] and result["matchedContactInfo"][0]["id"] == "f-2"
        assert app.backend.get_task_meta(pending.id)["queue"] == purpose
    # one E.164 query and one formatted query per lookup; the formatted one matched
    assert crm.queries.count("(415) 555-0102") == len(PURPOSES)


def test_rate_limit_retry_honours_retry_after(app: ContactLookupCelery, crm: FakeCRM) -> None:
    crm.set_rate_limit((1, 3))  # one request per 3 s window: the second lookup must wait
    first = lookup(app, "+14155550101", overriding_format="")
    assert first["successful"] and "retryCount" not in first["extraDataTracking"]
    started = time.monotonic()
    second = lookup(app, "+14155550103", overriding_format="")
    elapsed = time.monotonic() - started
    tracking = second["extraDataTracking"]
    assert second["successful"] and [c["id"] for c in second["matchedContactInfo"]] == ["f-3"]
    assert tracking["retryCount"] == len(crm.retry_afters) >= 1
    assert tracking["backoffSeconds"] == [float(w) for w in crm.retry_afters]
    assert elapsed >= sum(tracking["backoffSeconds"]) - 0.5  # the countdown really waited
    assert tracking["ratelimitAmount"] == 1 and "ratelimitReset" in tracking


def test_call_pop_whose_backoff_passes_the_deadline_fails_fast(
    app: ContactLookupCelery, crm: FakeCRM
) -> None:
    crm.set_rate_limit((1, 60))
    assert lookup(app, "+14155550101", overriding_format="")["successful"]
    started = time.monotonic()
    result = lookup(app, "+14155550103", purpose="call_pop", overriding_format="")
    assert time.monotonic() - started < 3
    assert result["successful"] is False
    assert "stopped ringing" in result["returnMessage"]["message"]
    assert result["extraDataTracking"]["errorType"] == "RateLimited"
    assert result["extraDataTracking"]["statusCode"] == 429
    assert result["extraDataTracking"]["wouldWaitSeconds"] > 5


def test_transient_5xx_retries_then_succeeds(app: ContactLookupCelery, crm: FakeCRM) -> None:
    crm.inject("503")
    result = lookup(app, "+14155550101", overriding_format="")
    assert result["successful"] and result["matchedContactInfo"][0]["id"] == "f-1"
    assert result["extraDataTracking"]["retryCount"] == 1
    assert 0.5 <= result["extraDataTracking"]["backoffSeconds"][0] <= 1.0
    assert crm.requests == 2


def test_permanent_error_does_not_retry(app: ContactLookupCelery, crm: FakeCRM) -> None:
    pending = enqueue(app, "wrongtoken", LookupRequest("+14155550101", purpose="call_log"))
    result = pending.get(timeout=10)
    assert result["successful"] is False
    assert result["extraDataTracking"]["errorType"] == "AuthRejected"
    assert result["extraDataTracking"]["statusCode"] == 401
    assert "Reconnect the CRM" in result["returnMessage"]["message"]
    assert crm.requests == 1 and app.backend.get_task_meta(pending.id)["retries"] == 0


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        (
            {"connection": "nope", "phoneNumber": "+14155550101", "purpose": "call_log"},
            "unknown connection",
        ),
        ({"connection": "fake", "purpose": "call_log"}, "phoneNumber"),
        (
            {
                "connection": "fake",
                "phoneNumber": "+14155550101",
                "purpose": "call_log",
                "debug": "yes",
            },
            "debug",
        ),
    ],
)
def test_bad_kwargs_give_a_failed_result(
    app: ContactLookupCelery, crm: FakeCRM, kwargs: dict[str, Any], message: str
) -> None:
    result = app.send_task("find_contact", kwargs=kwargs, queue="call_log").get(timeout=10)
    assert result["successful"] is False and message in result["returnMessage"]["message"]
    assert crm.requests == 0


def test_duplicate_delivery_returns_the_stored_result_without_side_effects(
    app: ContactLookupCelery, crm: FakeCRM, redis_url: str
) -> None:
    runs: list[tuple[str, Any]] = []

    def record(sender: Any = None, task_id: str = "", retval: Any = None, **_: Any) -> None:
        runs.append((task_id, retval))

    task_postrun.connect(record, weak=False)
    pubsub = redis.Redis.from_url(redis_url).pubsub()
    pubsub.subscribe("callpop:111:7001")
    pubsub.get_message(timeout=1)  # subscription confirmation
    query = LookupRequest(
        "+14155550101", purpose="call_pop", force_refresh=True, overriding_format=""
    )
    pop = {"rcAccountId": "111", "rcExtensionId": "7001", "telephonySessionId": "s-1"}
    try:
        first = enqueue(app, "fake", query, call_pop=pop, task_id="dup-1").get(timeout=10)
        message = pubsub.get_message(timeout=2)
        assert message and json.loads(message["data"])["result"] == first
        requests_after_first = crm.requests
        enqueue(app, "fake", query, call_pop=pop, task_id="dup-1")  # delivered again
        assert wait_for(lambda: len(runs) == 2, 10)
        assert runs[0] == runs[1] == ("dup-1", first)
        assert crm.requests == requests_after_first  # force_refresh, yet no second request
        assert pubsub.get_message(timeout=0.5) is None  # and no second call pop
    finally:
        task_postrun.disconnect(record)
        pubsub.close()


def test_expired_call_pop_message_is_dropped(
    tmp_path: Path, redis_url: str, crm: FakeCRM, monkeypatch: pytest.MonkeyPatch
) -> None:
    """On Redis the worker finds the ``expires`` header passed and revokes the job; on
    RabbitMQ the broker itself drops it at its AMQP ``expiration`` (Celery sets both from
    ``expires``), before any worker sees it. Either way no CRM request is made."""
    app = make_app(tmp_path, redis_url, crm, monkeypatch, call_pop_deadline_s=1)
    pending = enqueue(app, "fake", LookupRequest("+14155550101", purpose="call_pop"))
    if AMQP_BROKER_URL:
        with app.connection_for_write() as conn:
            channel = conn.default_channel

            def waiting() -> int:
                return int(channel.queue_declare("call_pop", passive=True).message_count)

            assert waiting() == 1
            assert wait_for(lambda: waiting() == 0, 5)  # expired in the broker
    else:
        # The phone stops ringing before any worker is free: wait (polling, with a deadline)
        # until the expiry the product stamped on the queued message has passed.
        (raw,) = redis.Redis.from_url(redis_url).lrange("call_pop", 0, -1)
        expires = datetime.fromisoformat(json.loads(raw)["headers"]["expires"])
        assert expires <= datetime.now(UTC) + timedelta(seconds=1.5)  # the 1 s deadline
        assert wait_for(lambda: datetime.now(UTC) > expires, 5)
    with start_worker(
        app,
        pool="threads",
        concurrency=2,
        perform_ping_check=False,
        queues=["call_pop"],
        shutdown_timeout=10,
    ):
        if AMQP_BROKER_URL:
            with pytest.raises(CeleryTimeoutError):
                pending.get(timeout=2)  # nothing left to run: no result, ever
        else:
            with pytest.raises(TaskRevokedError):
                pending.get(timeout=10)
    assert crm.requests == 0


def test_a_job_out_of_retries_ends_with_a_failed_result(
    tmp_path: Path, redis_url: str, crm: FakeCRM, monkeypatch: pytest.MonkeyPatch
) -> None:
    app = make_app(tmp_path, redis_url, crm, monkeypatch)
    crm.inject("500")
    waits = [1.0] * 10
    result = (
        app.tasks["find_contact"]
        .apply(
            kwargs={
                "connection": "fake",
                "phoneNumber": "+14155550101",
                "purpose": "call_log",
                "overridingFormat": "",
                "retryState": {"waits": waits, "crmRetries": 10},
            }
        )
        .get()
    )
    assert result["successful"] is False
    assert result["returnMessage"]["message"].startswith("Gave up after 10 retries.")
    assert result["extraDataTracking"]["retryCount"] == 10
    assert result["extraDataTracking"]["statusCode"] == 500
