"""tasks/events.py: how task events are rewritten before Flower sees them (pure)."""

from __future__ import annotations

from celery.utils.saferepr import saferepr

from contact_lookup.model import contact
from contact_lookup.model.errors import CRMUnavailable
from contact_lookup.model.redaction import PROCESS
from tasks.backoff import Deferred
from tasks.events import failed_lookup, rewrite

SECRET = "evt-canary-9f3Kq2"
FOUND = {
    "successful": True,
    "matchedContactInfo": [{"id": "c-1", "name": "Ada"}],
    "extraDataTracking": {},
}


def test_a_failed_lookup_is_sent_as_a_failed_task() -> None:
    failed = contact.failure(CRMUnavailable("The CRM answered 503 (it's down)."))
    kind, fields = rewrite("task-succeeded", {"result": saferepr(failed), "runtime": 0.2})
    assert kind == "task-failed"
    assert fields["errorType"] == "CRMUnavailable" and fields["traceback"] == ""
    assert fields["exception"] == repr(
        "CRMUnavailable: The CRM answered 503 (it's down). "
        "The CRM could not be reached or answered badly; try again shortly."
    ).join(("LookupFailed(", ")"))
    assert fields["runtime"] == 0.2 and fields["result"] == saferepr(failed)


def test_a_lookup_that_found_nothing_or_something_stays_a_success() -> None:
    for result in (FOUND, {**FOUND, "matchedContactInfo": []}):
        kind, fields = rewrite("task-succeeded", {"result": saferepr(result)})
        assert kind == "task-succeeded" and "exception" not in fields
    assert failed_lookup(saferepr(FOUND)) is None


def test_a_deferral_has_no_traceback_and_a_crm_retry_keeps_it() -> None:
    reason = Deferred("deferred by the shared rate limit of 'x' until 01:02:03.000Z", 9.0)
    kind, fields = rewrite("task-retried", {"exception": repr(reason), "traceback": "Tb..."})
    assert kind == "task-retried" and fields["traceback"] == ""
    _, crm = rewrite("task-retried", {"exception": "CRMUnavailable('503')", "traceback": "Tb"})
    assert crm["traceback"] == "Tb"


def test_secrets_are_redacted_from_every_text_field() -> None:
    PROCESS.add(SECRET)
    leaky = f"UnicodeEncodeError('latin-1', 'Bearer {SECRET}', 7, 8, 'ordinal')"
    for kind in ("task-failed", "task-retried", "task-succeeded"):
        _, fields = rewrite(
            kind,
            {"exception": leaky, "traceback": f"line\n{leaky}", "result": leaky, "uuid": "u"},
        )
        assert not any(SECRET in str(v) for v in fields.values()), fields
        assert "***" in fields["exception"] and fields["uuid"] == "u"
