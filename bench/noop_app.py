"""The baseline's Celery app: the product's worker app, plus a task that does nothing.

``python -m celery -A bench.noop_app worker ...`` is ``celery -A worker worker ...`` with one
more task registered on the same app (same ``create_app`` settings: acks late, prefetch 1,
JSON, events, result backend), so a baseline worker differs from a lookup worker only in the
body of the task it runs. Benchmarks send ``bench.noop`` with the very kwargs a
``find_contact`` job carries.
"""

from __future__ import annotations

import time
from typing import Any

from worker import app

NOOP = "bench.noop"  # the name bench.harness.NOOP sends
SLEEP = "bench.sleep"  # bench.harness.SLEEP


@app.task(name=NOOP, shared=False)
def noop(**kwargs: Any) -> dict[str, Any]:
    """A lookup-shaped empty answer, without looking anything up."""
    return {
        "successful": True,
        "matchedContactInfo": [],
        "returnMessage": None,
        "extraDataTracking": {},
    }


@app.task(name=SLEEP, shared=False)
def sleep(*, seconds: float = 0.1, **kwargs: Any) -> dict[str, Any]:
    """Waits like a CRM request of ``seconds`` would, without one: Celery's own ceiling for
    I/O-bound tasks at a given concurrency."""
    time.sleep(seconds)
    return noop(**kwargs)


__all__ = ["NOOP", "SLEEP", "app", "noop", "sleep"]
