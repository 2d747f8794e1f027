"""``contact-lookup replay EVENTS.jsonl [--wait]``: recorded webhook bodies through the producer.

One notification body per line; one JSON line out per step (docs/interface.md section 4):
``{"uuid", "action", "purpose", "phoneNumber", "reason", "taskId"}`` (plus ``messageType`` on
SMS and fax). With ``--wait`` each enqueued job's ``result`` is added, waiting for it before
the next event is read, as a live stream would space them; answered-from-cache lines carry
their result too. A line that is not a JSON object gives a ``skipped`` line naming its line
number, and the replay goes on. When the broker is unreachable the replay stops (exit 1);
running it again resumes, since the events already processed come back as duplicates.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable
from typing import Any, Protocol

from celery.exceptions import TimeoutError as CeleryTimeout
from celery.result import AsyncResult

from contact_lookup.model import contact
from producers import flower_events
from producers.pipeline import EventPipeline, Outcome, PipelineUnavailable


class LineSink(Protocol):
    """Where replay writes its JSON lines: stdout, or the demo's summary printer."""

    def write(self, text: str, /) -> int: ...

    def flush(self) -> None: ...


def _write(out: LineSink, line: dict[str, Any]) -> None:
    out.write(json.dumps(line, separators=(", ", ": ")) + "\n")
    out.flush()


class Replay:
    def __init__(
        self, producer: EventPipeline, out: LineSink, *, wait_s: float | None = None
    ) -> None:
        self.producer = producer
        self.out = out
        self.wait_s = wait_s
        self.timed_out = False

    def run(self, lines: Iterable[str]) -> int:
        """Feed every line; 0 when all were processed, 1 when the broker stopped the replay."""
        for number, text in enumerate(lines, start=1):
            if not text.strip():
                continue
            try:
                notification = json.loads(text)
            except json.JSONDecodeError as exc:
                self._skip(number, f"line {number}: not valid JSON ({exc.msg})")
                continue
            if not isinstance(notification, dict):
                self._skip(number, f"line {number}: not a notification (a JSON object)")
                continue
            started = time.monotonic()
            try:
                outcomes = self.producer.handle(notification, started=started)
            except PipelineUnavailable as exc:
                raise ReplayStopped(
                    f"stopped at line {number}: {exc}; run the replay again "
                    "to continue (processed events come back as "
                    "duplicates)"
                ) from exc
            flower_events.cached_pops(self.producer.app, outcomes, started)
            for outcome in outcomes:
                _write(self.out, self._line(outcome))
        return 0

    def _skip(self, number: int, reason: str) -> None:
        _write(
            self.out,
            {
                "uuid": None,
                "action": "skipped",
                "purpose": None,
                "phoneNumber": None,
                "reason": reason,
                "taskId": None,
                "line": number,
            },
        )

    def _line(self, outcome: Outcome) -> dict[str, Any]:
        line = outcome.line()
        if self.wait_s is None:
            return line
        if outcome.action == "answered-from-cache":
            line["result"] = outcome.result
        elif outcome.action == "enqueued" and outcome.task_id:
            line["result"] = self._wait(outcome)
        return line

    def _wait(self, outcome: Outcome) -> dict[str, Any]:
        assert self.wait_s is not None
        if self.timed_out:
            return contact.no_worker_answer(
                f"Not waited for: an earlier job got no answer within {self.wait_s:g} s."
            )
        pending = AsyncResult(outcome.task_id, app=self.producer.app)
        try:
            result = pending.get(timeout=self.wait_s, propagate=False)
        except CeleryTimeout:
            self.timed_out = True
            return contact.no_worker_answer(
                f"No worker answered within {self.wait_s:g} s. Is a worker "
                f"consuming the '{outcome.purpose}' queue? Start one with: "
                f"contact-lookup worker -Q {outcome.purpose}"
            )
        if isinstance(result, dict):
            return result
        return contact.no_worker_answer(
            f"The lookup task did not return a result ({pending.state})."
        )


class ReplayStopped(Exception):
    """The broker or Redis became unreachable; the replay can be run again to continue."""
