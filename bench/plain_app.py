"""The plain-Celery baseline: a Celery app with Celery's own defaults and one no-op task.

Nothing of the product's settings (no late acks, no prefetch 1, no events, no extended
results, no started state): what a Celery user gets out of the box on the same Redis.
``python -m celery -A bench.plain_app worker --pool threads -c 8 -Q celery`` runs it (the
benchmark starts it without ``-E``, so no task events). The worker reads ``REDIS_URL``;
the benchmark builds its sending app with ``make_app(url)`` on the same database.
"""

from __future__ import annotations

import os
from typing import Any

from celery import Celery

PLAIN_NOOP = "plain.noop"
QUEUE = "celery"  # Celery's default queue


def make_app(url: str) -> Celery:
    """A default Celery app on ``url`` (broker and result backend), with the no-op task."""
    app = Celery("plain", broker=url, backend=url)

    @app.task(name=PLAIN_NOOP, shared=False)
    def noop(**kwargs: Any) -> dict[str, Any]:
        return {
            "successful": True,
            "matchedContactInfo": [],
            "returnMessage": None,
            "extraDataTracking": {},
        }

    return app


app = make_app(os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0"))

__all__ = ["PLAIN_NOOP", "QUEUE", "app", "make_app"]
