"""The result backend (tasks/backend.py) on a real Redis: a finished result is final.

Every order of SUCCESS, RETRY, STARTED, REVOKED and FAILURE writes for one task id, racing
writers on threads, what subscribers are told, and the redaction of stored exception text.
"""

from __future__ import annotations

import itertools
import threading
import uuid
from collections.abc import Iterator

import pytest
import redis
from celery import states

from contact_lookup.model.redaction import PROCESS
from tasks.backend import FinalResultBackend
from tasks.backoff import Deferred
from tasks.celery_app import ContactLookupCelery, create_app
from tests.conftest import settings_for

CANARY = "cnry-backend-“Q7xZ9p2”"
RESULT = {"successful": True, "matchedContactInfo": [], "extraDataTracking": {}}
WRITES = {
    states.SUCCESS: RESULT,
    states.RETRY: Deferred("deferred until then", 1.0),
    states.STARTED: {"pid": 1},
    states.REVOKED: Exception("revoked"),
    states.FAILURE: RuntimeError("boom"),
}
READY = {states.SUCCESS, states.FAILURE, states.REVOKED}


@pytest.fixture
def app(redis_url: str) -> Iterator[ContactLookupCelery]:
    app = create_app(settings_for(redis_url, "unused.toml"))
    yield app
    app.close()


def store(app: ContactLookupCelery, task_id: str, state: str) -> None:
    app.backend.store_result(task_id, WRITES[state], state)


def stored_state(app: ContactLookupCelery, task_id: str) -> str:
    app.backend._cache.clear()
    return str(app.backend.get_task_meta(task_id)["status"])


def test_the_app_uses_the_final_result_backend(app: ContactLookupCelery) -> None:
    assert isinstance(app.backend, FinalResultBackend)


@pytest.mark.parametrize("first,second", list(itertools.permutations(WRITES, 2)))
def test_no_write_replaces_a_finished_state_but_a_finished_one(
    app: ContactLookupCelery, first: str, second: str
) -> None:
    task_id = str(uuid.uuid4())
    store(app, task_id, first)
    store(app, task_id, second)
    if first == states.SUCCESS:
        expected = states.SUCCESS  # nothing replaces a success
    elif first in READY and second not in READY:
        expected = first  # a late RETRY/STARTED never reopens a finished job
    else:
        expected = second
    assert stored_state(app, task_id) == expected
    if expected == states.SUCCESS:
        assert app.backend.get_task_meta(task_id)["result"] == RESULT


def test_racing_writers_never_lose_a_success(app: ContactLookupCelery) -> None:
    """Eight threads write RETRY/STARTED/REVOKED around one SUCCESS, 40 task ids."""
    ids = [str(uuid.uuid4()) for _ in range(40)]
    go = threading.Barrier(9)

    def late_writer(state: str) -> None:
        go.wait()
        for task_id in ids:
            for _ in range(5):
                store(app, task_id, state)

    def success_writer() -> None:
        go.wait()
        for task_id in ids:
            store(app, task_id, states.SUCCESS)

    threads = [
        threading.Thread(target=late_writer, args=(s,))
        for s in [states.RETRY, states.STARTED, states.REVOKED, states.RETRY] * 2
    ]
    threads.append(threading.Thread(target=success_writer))
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert {stored_state(app, t) for t in ids} == {states.SUCCESS}


def test_a_refused_write_is_not_published(
    app: ContactLookupCelery, redis_client: redis.Redis
) -> None:
    task_id = str(uuid.uuid4())
    key = app.backend.get_key_for_task(task_id)
    pubsub = redis_client.pubsub()
    pubsub.subscribe(key)
    assert pubsub.get_message(timeout=2)["type"] == "subscribe"
    store(app, task_id, states.SUCCESS)
    store(app, task_id, states.RETRY)
    store(app, task_id, states.STARTED)
    published = []
    while (message := pubsub.get_message(timeout=0.5)) is not None:
        published.append(app.backend.decode(message["data"])["status"])
    pubsub.close()
    assert published == [states.SUCCESS]


def test_stored_exception_text_is_redacted_and_a_deferral_has_no_traceback(
    app: ContactLookupCelery, redis_client: redis.Redis
) -> None:
    PROCESS.add(CANARY)
    failed = str(uuid.uuid4())
    try:
        ("Bearer " + CANARY).encode("latin-1")  # what http.client does with a header value
    except UnicodeEncodeError as exc:  # its args hold the whole value: the token
        assert CANARY in repr(exc)
        app.backend.mark_as_failure(failed, exc, traceback=f"Traceback...\n{exc}\n")
    retried = str(uuid.uuid4())
    app.backend.mark_as_retry(retried, RuntimeError(f"header {CANARY}"), traceback=CANARY)
    deferred = str(uuid.uuid4())
    app.backend.mark_as_retry(deferred, Deferred("until 01:02:03Z", 5.0), traceback="Trace")
    values = [redis_client.get(app.backend.get_key_for_task(t)) or b"" for t in (failed, retried)]
    assert all(values) and not any(CANARY.encode() in v for v in values)
    assert all(b"***" in v for v in values)  # redacted, not dropped
    meta = app.backend.get_task_meta(deferred)
    assert meta["traceback"] is None
    assert isinstance(meta["result"], Deferred) and meta["result"].until == 5.0


def test_the_started_write_answers_the_already_done_check(app: ContactLookupCelery) -> None:
    """The STARTED write (task_track_started) tells this thread whether a SUCCESS is stored,
    so the task's already-done check needs no read of its own; without that write it reads."""
    backend = app.backend
    assert isinstance(backend, FinalResultBackend)
    done, fresh = str(uuid.uuid4()), str(uuid.uuid4())
    backend.store_result(done, {"successful": True}, states.SUCCESS)
    backend.store_result(done, {"pid": 1}, states.STARTED)  # refused: the SUCCESS answers
    redis_client = backend.client
    backend._cache.clear()
    backend.client = None  # any read now would fail
    try:
        meta = backend.stored_success(done)
    finally:
        backend.client = redis_client
    assert meta is not None and meta["result"] == {"successful": True}
    backend.store_result(fresh, {"pid": 1}, states.STARTED)  # stored: no SUCCESS there
    backend.client = None
    try:
        assert backend.stored_success(fresh) is None
    finally:
        backend.client = redis_client
    assert stored_state(app, fresh) == states.STARTED
    # consumed once: the check before a retry reads again, and sees a SUCCESS stored since
    backend.store_result(fresh, {"successful": True}, states.SUCCESS)
    assert backend.stored_success(fresh) == {**backend.get_task_meta(fresh)}
    assert stored_state(app, done) == states.SUCCESS
