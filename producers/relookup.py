"""``contact-lookup relookup NUMBERS --connection NAME``: a batch re-lookup on the relookup queue.

Input: one number per line, or a spreadsheet export with a phone number column, in any of
the encodings, delimiters and header spellings ``producers.batchfile`` reads (``--column``
names the column).
Numbers are normalised in the connection's region and deduplicated (``(415) 555-0100`` and
``+14155550100`` are looked up once, reported on the first line that had them).

Output: one JSON line per number, ``{"line", "phoneNumber", "result"}``, in completion order,
to ``--out`` (appended) or stdout; a line that is not a valid number gets a failed result
(``errorType`` ``InvalidPhoneNumber``) and the batch goes on. Re-running with the same
``--out`` resumes: numbers already in it are skipped (delete a line to look it up again).
Without ``--refresh`` a cached answer is written at once, with no job. At most ``--window``
jobs are outstanding; a summary goes to stderr at the end. Progress bar on stderr (tqdm).
"""

from __future__ import annotations

import json
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

from celery import Celery
from kombu.exceptions import OperationalError
from tqdm import tqdm

from contact_lookup.core.request import LookupRequest
from contact_lookup.core.service import LookupService
from contact_lookup.model import contact
from contact_lookup.model.errors import InvalidInput
from producers import batchfile
from tasks.enqueue import enqueue

POLL_INTERVAL_S = 0.1


class RelookupStopped(Exception):
    """The batch cannot go on (no worker, broker unreachable); --out holds what was done."""


@dataclass
class Summary:
    matched: int = 0
    not_found: int = 0
    failed: int = 0
    invalid: int = 0
    from_cache: int = 0
    already_done: int = 0
    duplicates: int = 0

    def count(self, result: dict[str, Any], *, invalid: bool = False) -> None:
        if invalid:
            self.invalid += 1
        elif not result.get("successful"):
            self.failed += 1
        elif any(not contact.is_placeholder(c) for c in result.get("matchedContactInfo", [])):
            self.matched += 1
        else:
            self.not_found += 1
        if (result.get("extraDataTracking") or {}).get("isCached"):
            self.from_cache += 1

    def text(self) -> str:
        total = self.matched + self.not_found + self.failed + self.invalid
        parts = [
            f"relookup: {total} numbers: {self.matched} matched, {self.not_found} not "
            f"found, {self.failed} failed, {self.invalid} invalid; {self.from_cache} "
            "from cache"
        ]
        if self.duplicates:
            parts.append(f"{self.duplicates} repeated numbers looked up once")
        if self.already_done:
            parts.append(f"{self.already_done} already in the results (skipped)")
        return "; ".join(parts)


def done_numbers(path: Path) -> set[str]:
    """phoneNumber values already written to an --out file (unreadable lines ignored)."""
    done: set[str] = set()
    if not path.exists():
        return done
    with path.open(encoding="utf-8") as f:
        for line in f:
            try:
                record = json.loads(line)
            except ValueError:
                continue  # a line cut short by an interrupted run: looked up again
            if isinstance(record, dict) and isinstance(record.get("phoneNumber"), str):
                done.add(record["phoneNumber"])
    return done


@dataclass
class Batch:
    """Runs one re-lookup; every dependency is passed in."""

    app: Celery
    service: LookupService
    connection: str
    out: TextIO
    refresh: bool = False
    window: int = 200
    idle_timeout_s: float = 300.0
    progress: Any = None  # a tqdm bar, or None
    summary: Summary = field(default_factory=Summary)
    _pending: dict[str, tuple[int, str]] = field(default_factory=dict)
    _last_progress: float = field(default_factory=time.monotonic)

    def run(self, numbers: list[tuple[int, str]], done: set[str]) -> Summary:
        seen: set[str] = set()
        for line, raw in numbers:
            query = LookupRequest(raw, purpose="relookup", force_refresh=self.refresh)
            try:
                number = self.service.prepare(self.connection, query).number
            except InvalidInput as exc:
                if raw in done:
                    self._tick("already_done")
                elif raw in seen:
                    self._tick("duplicates")
                else:
                    seen.add(raw)
                    self._write(line, raw, contact.failure(exc), invalid=True)
                continue
            if number in done:
                self._tick("already_done")
                continue
            if number in seen:
                self._tick("duplicates")
                continue
            seen.add(number)
            self._lookup(line, number)
        while self._pending:
            self._collect()
        return self.summary

    def _tick(self, counter: str) -> None:
        setattr(self.summary, counter, getattr(self.summary, counter) + 1)
        if self.progress is not None:
            self.progress.update(1)

    def _lookup(self, line: int, number: str) -> None:
        query = LookupRequest(number, purpose="relookup", force_refresh=self.refresh)
        if not self.refresh:
            cached = self.service.cached(self.connection, query)
            if cached is not None:
                self._write(line, number, cached)
                return
        while len(self._pending) >= self.window:
            self._collect()
        try:
            pending = enqueue(self.app, self.connection, query)
        except OperationalError as exc:
            raise RelookupStopped(f"the broker is unreachable ({type(exc).__name__})") from exc
        self._pending[pending.id] = (line, number)
        if len(self._pending) == 1:
            self._last_progress = time.monotonic()

    def _collect(self) -> None:
        """Write every finished job; wait a little when none has finished."""
        ready = self.app.backend.get_many(
            set(self._pending), interval=POLL_INTERVAL_S, max_iterations=1, no_ack=True
        )
        got = 0
        for task_id, meta in ready:
            line, number = self._pending.pop(task_id)
            result = meta.get("result")
            if meta.get("status") != "SUCCESS" or not isinstance(result, dict):
                result = {
                    "successful": False,
                    "matchedContactInfo": [],
                    "returnMessage": {
                        "messageType": "danger",
                        "ttl": 5000,
                        "message": f"The lookup job ended {meta.get('status')}.",
                    },
                    "extraDataTracking": {"errorType": "TaskFailed"},
                }
            self._write(line, number, result)
            self.app.backend.forget(task_id)  # the result lives on in --out
            got += 1
        if got:
            self._last_progress = time.monotonic()
        elif time.monotonic() - self._last_progress > self.idle_timeout_s:
            for task_id in self._pending:
                self.app.control.revoke(task_id)
            raise RelookupStopped(
                f"no result for {self.idle_timeout_s:g} s. Is a worker consuming the "
                "'relookup' queue? Start one with: contact-lookup worker -Q relookup"
            )

    def _write(
        self, line: int, number: str, result: dict[str, Any], *, invalid: bool = False
    ) -> None:
        self.out.write(json.dumps({"line": line, "phoneNumber": number, "result": result}) + "\n")
        self.out.flush()
        self.summary.count(result, invalid=invalid)
        if self.progress is not None:
            self.progress.update(1)


def run(
    app: Celery,
    service: LookupService,
    connection: str,
    source: str,
    out_path: str | None,
    *,
    refresh: bool,
    window: int,
    idle_timeout_s: float,
    column: str | None = None,
) -> int:
    """The relookup command: 0 when every number has a line, 1 when the batch stopped."""
    service.config.connection(connection)  # ConfigError (exit 2) for an unknown connection
    data = sys.stdin.buffer.read() if source == "-" else Path(source).read_bytes()
    numbers = batchfile.read_numbers(data, name=source, column=column)
    done = done_numbers(Path(out_path)) if out_path else set()
    out: TextIO
    if out_path:
        path = Path(out_path)
        if path.exists() and path.stat().st_size and not path.read_bytes().endswith(b"\n"):
            with path.open("a", encoding="utf-8") as f:
                f.write("\n")  # an interrupted run left half a line: start on a new one
        out = path.open("a", encoding="utf-8")
    else:
        out = sys.stdout
    bar = tqdm(total=len(numbers), file=sys.stderr, unit="number", desc="relookup", mininterval=0.5)
    batch = Batch(
        app,
        service,
        connection,
        out,
        refresh=refresh,
        window=window,
        idle_timeout_s=idle_timeout_s,
        progress=bar,
    )
    code = 0
    try:
        batch.run(numbers, done)
    except RelookupStopped as exc:
        print(f"contact-lookup: relookup stopped: {exc}", file=sys.stderr)
        code = 1
    finally:
        bar.close()
        if out is not sys.stdout:
            out.close()
    print(batch.summary.text(), file=sys.stderr)
    return code
