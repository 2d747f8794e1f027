"""A job executes at most once per delivery of its result (issue 12, item 5): on a real
in-process worker, real Redis and a fake CRM over real HTTP, an execution whose job already
has a stored successful result (a redelivered twin finished meanwhile) neither retries nor
asks the CRM again, whether the twin finished before the retry was scheduled or after."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from celery.contrib.testing.worker import start_worker
from celery.signals import task_postrun, task_retry

from contact_lookup.core.request import LookupRequest
from contact_lookup.model.purpose import PURPOSES
from crmsim.base import SimRequest, SimResponse
from tasks.celery_app import ContactLookupCelery
from tasks.enqueue import enqueue
from tests.fakecrm import SEED, FakeCRM, wait_for
from tests.integration.test_worker import TOKEN, make_app

TWIN = {
    "successful": True,
    "matchedContactInfo": [{"id": "f-twin"}],
    "returnMessage": {"message": "stored by the copy that finished first"},
    "extraDataTracking": {},
}


@pytest.fixture
def crm() -> Iterator[FakeCRM]:
    with FakeCRM(SEED, token=TOKEN, latency_s=0.3) as sim:
        yield sim


@pytest.fixture
def app(
    tmp_path: Path, redis_url: str, crm: FakeCRM, monkeypatch: pytest.MonkeyPatch
) -> Iterator[ContactLookupCelery]:
    app = make_app(tmp_path, redis_url, crm, monkeypatch)
    with start_worker(
        app, pool="threads", concurrency=2, perform_ping_check=False, queues=list(PURPOSES)
    ):
        yield app


@pytest.fixture
def executions() -> Iterator[list[Any]]:
    """Every execution's return value (a Retry exception when it scheduled a retry)."""
    done: list[Any] = []

    def record(retval: Any = None, **_: Any) -> None:
        done.append(retval)

    task_postrun.connect(record, weak=False)
    yield done
    task_postrun.disconnect(record)


def send(app: ContactLookupCelery, task_id: str) -> None:
    query = LookupRequest("+14155550101", purpose="call_log", force_refresh=True)
    enqueue(app, "fake", query, task_id=task_id)


def test_a_retry_is_not_scheduled_when_a_twin_already_succeeded(
    app: ContactLookupCelery, crm: FakeCRM, executions: list[Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    def twin_finishes_while_the_crm_answers(req: SimRequest) -> SimResponse:
        # The copy that finished first stores its result before this CRM answer goes out.
        app.backend.store_result("i12-twin-before-retry", TWIN, "SUCCESS")
        return SimResponse(503, {"error": "unavailable"})

    monkeypatch.setattr(crm, "route", twin_finishes_while_the_crm_answers)
    send(app, "i12-twin-before-retry")
    assert wait_for(lambda: len(executions) == 1, 20)
    assert executions[0] == TWIN  # the 503 led to no retry: the twin's result is kept
    assert 1 <= crm.requests <= 2  # one execution: E.164 and a format, sent together
    assert app.backend.get_task_meta("i12-twin-before-retry")["result"] == TWIN


def test_a_scheduled_retry_is_dropped_when_a_twin_succeeded_meanwhile(
    app: ContactLookupCelery, crm: FakeCRM, executions: list[Any]
) -> None:
    asked: list[int] = []

    def twin_finishes_after_the_retry_is_scheduled(request: Any = None, **_: Any) -> None:
        asked.append(crm.requests)  # what the first execution asked the CRM
        app.backend.store_result(request.id, TWIN, "SUCCESS")

    task_retry.connect(twin_finishes_after_the_retry_is_scheduled, weak=False)
    try:
        crm.inject("503")
        send(app, "i12-twin-after-retry")
        assert wait_for(lambda: len(executions) == 2, 20)
    finally:
        task_retry.disconnect(twin_finishes_after_the_retry_is_scheduled)
    assert executions[1] == TWIN  # the retry ran but returned the stored result
    assert asked and crm.requests == asked[0]  # and never asked the CRM again
