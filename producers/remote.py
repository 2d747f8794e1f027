"""``contact-lookup lookup`` without ``--local``: enqueue, then wait for a worker's result."""

from __future__ import annotations

from typing import Any

from celery.exceptions import TaskRevokedError
from celery.exceptions import TimeoutError as CeleryTimeout
from kombu.exceptions import OperationalError

from contact_lookup.core.request import LookupRequest
from contact_lookup.model import contact
from contact_lookup.model.errors import CRMUnavailable
from contact_lookup.model.redaction import redact_url
from contact_lookup.settings import Settings
from tasks.celery_app import create_app
from tasks.enqueue import enqueue


def lookup_remote(
    settings: Settings, connection: str, query: LookupRequest, timeout_s: float
) -> dict[str, Any]:
    app = create_app(settings)
    try:
        pending = enqueue(app, connection, query)
    except OperationalError:
        return contact.failure(
            CRMUnavailable(
                f"The broker at {redact_url(settings.broker_url)} is unreachable; "
                "the lookup was not queued."
            )
        )
    try:
        result: dict[str, Any] = pending.get(timeout=timeout_s, propagate=True)
        return result
    except CeleryTimeout:
        pending.revoke()  # nobody is waiting any more; don't let a late worker do the work
        return contact.no_worker_answer(
            f"No worker answered within {timeout_s:g} s. Is a worker consuming the "
            f"'{query.purpose}' queue? Start one with: contact-lookup worker -Q {query.purpose}"
        )
    except TaskRevokedError:
        return contact.no_worker_answer(
            "The job expired before a worker took it "
            "(a call pop is only worth answering while the phone rings)."
        )
    finally:
        app.close()
