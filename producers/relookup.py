"""``contact-lookup relookup NUMBERS --connection NAME``: a batch re-lookup on the relookup queue.

Input: one number per line (``#`` comment lines allowed), or a spreadsheet export with a
phone number column, in any of the encodings, delimiters and header spellings
``producers.batchfile`` reads (``--column`` names the column). Numbers are normalised in the
connection's region and looked up once each.

Output: **one JSON line per input row**, in completion order, to ``--out`` (appended) or
stdout, each with the row's ``line`` number:

- ``{"line", "phoneNumber", "result"}``: the spec's result object; a row that is not a valid
  number gets a failed result (``errorType`` ``InvalidPhoneNumber``) and the batch goes on;
- ``{"line", "phoneNumber", "duplicateOf": LINE}``: the number was looked up on that row;
- ``{"line", "phoneNumber": "", "skipped": "blank" | "comment"}``.

Re-running with the same ``--out`` resumes: rows whose line is already in it are skipped.
Without ``--refresh`` a cached answer is written at once, with no job. At most ``--window``
jobs are outstanding.

Waiting is by each job's stored state, not by idle time: a job a worker holds (STARTED),
or one deferred by the rate limit (RETRY, with its wake-up time) is progressing; the batch
stops only when no job finished or changed state for ``--timeout`` seconds (after a deferred
job's wake-up time). It never revokes a finished job; on stop, Ctrl-C or ``--cancel OUT``
(from another shell) it revokes its jobs still queued, writes what finished, and prints the
summary of the whole ``--out`` file and the command that resumes the batch. ``--cancel`` on a
file no batch writes (none running, no job of one outstanding) changes nothing and says so.

Before starting it prints an estimate from the connection's budget (``rate_limit``, less the
call-pop reserve) and the CRM requests each number takes. Exit status: 0 when every row of
the input has its line, 1 when the batch stopped or was cancelled, 130 on Ctrl-C.
"""

from __future__ import annotations

import json
import math
import os
import shlex
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

import redis
from celery import Celery, states
from kombu.exceptions import OperationalError
from tqdm import tqdm

from contact_lookup.core import keys
from contact_lookup.core.ratelimit import Limit
from contact_lookup.core.request import LookupRequest
from contact_lookup.core.service import LookupService
from contact_lookup.model import contact
from contact_lookup.model.errors import InvalidInput
from producers import batchfile
from tasks.enqueue import enqueue

POLL_INTERVAL_S = 0.2
JOBS_TTL_S = 7 * 86400  # a batch's job registry outlives any sane batch, then goes
CANCEL_TTL_S = 86400


class RelookupStopped(Exception):
    """The batch cannot go on (no worker, broker unreachable, cancelled); --out holds what
    was done."""


@dataclass
class Summary:
    """Counts over result lines: of one run, or of a whole --out file (``of_file``)."""

    matched: int = 0
    not_found: int = 0
    failed: int = 0
    invalid: int = 0
    from_cache: int = 0
    already_done: int = 0
    duplicates: int = 0
    skipped: int = 0

    def count(self, record: dict[str, Any]) -> None:
        """Count one output line."""
        if "duplicateOf" in record:
            self.duplicates += 1
            return
        if "skipped" in record:
            self.skipped += 1
            return
        result = record.get("result") or {}
        if (result.get("extraDataTracking") or {}).get("errorType") == "InvalidPhoneNumber":
            self.invalid += 1
        elif not result.get("successful"):
            self.failed += 1
        elif any(not contact.is_placeholder(c) for c in result.get("matchedContactInfo", [])):
            self.matched += 1
        else:
            self.not_found += 1
        if (result.get("extraDataTracking") or {}).get("isCached"):
            self.from_cache += 1

    @classmethod
    def of_file(cls, path: Path) -> Summary:
        summary = cls()
        for record in read_records(path):
            summary.count(record)
        return summary

    def text(self, what: str = "relookup") -> str:
        total = self.matched + self.not_found + self.failed + self.invalid
        parts = [
            f"{what}: {total} numbers: {self.matched} matched, {self.not_found} not "
            f"found, {self.failed} failed, {self.invalid} invalid; {self.from_cache} "
            "from cache"
        ]
        if self.duplicates:
            parts.append(f"{self.duplicates} repeated numbers looked up once")
        if self.skipped:
            parts.append(f"{self.skipped} blank or comment rows")
        if self.already_done:
            parts.append(f"{self.already_done} already in the results (skipped)")
        return "; ".join(parts)


def read_records(path: Path) -> Iterator[dict[str, Any]]:
    """The JSON lines of an --out file (lines cut short by an interrupted run are skipped)."""
    if not path.exists():
        return
    with path.open(encoding="utf-8") as f:
        for line in f:
            try:
                record = json.loads(line)
            except ValueError:
                continue  # looked up again on resume
            if isinstance(record, dict) and isinstance(record.get("line"), int):
                yield record


def done_lines(path: Path) -> dict[int, str]:
    """{line: phoneNumber} of the rows an --out file already has a line for."""
    return {r["line"]: str(r.get("phoneNumber", "")) for r in read_records(path)}


def done_numbers(path: Path) -> set[str]:
    """phoneNumber values already looked up in an --out file."""
    return {str(r["phoneNumber"]) for r in read_records(path) if "result" in r}


# ----- the estimate ---------------------------------------------------------------------------
@dataclass(frozen=True)
class Budget:
    """What a number costs and what the connection allows: ``limit`` is None when the
    connection has no rate limit; ``requests_per_number`` counts the CRM requests of one
    lookup (one per search term, times the connector's ``requests_per_query``)."""

    limit: Limit | None
    requests_per_number: int


def estimate_s(numbers: int, budget: Budget) -> float | None:
    """Seconds the batch needs at least under the budget, or None when it is unlimited.

    A batch takes ``capacity(priority=False)`` tokens (the budget less the call-pop reserve)
    per ``hold_s`` (the window plus the limiter's slack): core/ratelimit.py.
    """
    if budget.limit is None or numbers <= 0:
        return None if budget.limit is None else 0.0
    per_window = budget.limit.capacity(priority=False)
    lookups_per_window = max(1, per_window // max(1, budget.requests_per_number))
    return math.ceil(numbers / lookups_per_window) * budget.limit.hold_s


def _duration(seconds: float) -> str:
    seconds = round(seconds)
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours} h {minutes:02d} min"
    return f"{minutes} min {secs:02d} s" if minutes else f"{secs} s"


def estimate_text(numbers: int, budget: Budget, connection: str) -> str:
    """One line for stderr before the batch starts."""
    requests = numbers * budget.requests_per_number
    head = (
        f"relookup: {numbers} numbers to look up, at most {requests} CRM requests "
        f"({budget.requests_per_number} per number)"
    )
    seconds = estimate_s(numbers, budget)
    if budget.limit is None or seconds is None:
        return f"{head}; connection {connection!r} has no rate limit: as fast as the workers go"
    limit = budget.limit
    return (
        f"{head}; connection {connection!r} allows batches {limit.capacity(priority=False)} "
        f"of {limit.requests} requests per {limit.window_s:g} s ({limit.reserve} kept for call "
        f"pops): about {_duration(seconds)} if nothing is cached"
    )


# ----- the batch ------------------------------------------------------------------------------
@dataclass
class _Job:
    line: int
    number: str
    state: str = states.PENDING
    changed: float = field(default_factory=time.monotonic)
    wake_at: float = 0.0  # wall clock: a deferred job's wake-up time


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
    registry: str | None = None  # the --out path: jobs registered for --cancel
    summary: Summary = field(default_factory=Summary)
    _pending: dict[str, _Job] = field(default_factory=dict)

    @property
    def _redis(self) -> redis.Redis:
        client: redis.Redis = self.app.backend.client
        return client

    def run(self, rows: list[tuple[int, str, str]], done: dict[int, str]) -> Summary:
        first_line: dict[str, int] = {
            number: line for line, number in sorted(done.items()) if number
        }
        for line, raw, kind in rows:
            if line in done:
                self._tick("already_done")
                continue
            if kind != "number":
                self._write({"line": line, "phoneNumber": "", "skipped": kind})
                continue
            query = LookupRequest(raw, purpose="relookup", force_refresh=self.refresh)
            try:
                number = self.service.prepare(self.connection, query).number
            except InvalidInput as exc:
                number = raw
                if number not in first_line:
                    first_line[number] = line
                    self._write({"line": line, "phoneNumber": raw, "result": contact.failure(exc)})
                    continue
            if number in first_line:
                self._write(
                    {"line": line, "phoneNumber": number, "duplicateOf": first_line[number]}
                )
                continue
            first_line[number] = line
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
                self._write({"line": line, "phoneNumber": number, "result": cached})
                return
        while len(self._pending) >= self.window:
            self._collect()
        try:
            pending = enqueue(self.app, self.connection, query)
        except OperationalError as exc:
            raise RelookupStopped(f"the broker is unreachable ({type(exc).__name__})") from exc
        self._pending[pending.id] = _Job(line, number)
        if self.registry:
            with self._redis.pipeline() as pipe:
                key = keys.relookup_jobs(self.registry)
                pipe.sadd(key, pending.id)
                pipe.expire(key, JOBS_TTL_S)
                pipe.execute()

    def _metas(self, ids: list[str]) -> dict[str, dict[str, Any]]:
        """The stored meta of each id (PENDING when none is stored yet); one MGET per 500."""
        backend = self.app.backend
        out: dict[str, dict[str, Any]] = {}
        for i in range(0, len(ids), 500):
            chunk = ids[i : i + 500]
            raws = self._redis.mget([backend.get_key_for_task(t) for t in chunk])
            for task_id, raw in zip(chunk, raws, strict=True):
                out[task_id] = backend.decode(raw) if raw else {"status": states.PENDING}
        return out

    def _collect(self, *, wait: bool = True) -> None:
        """Write every finished job and note the others' states; stop when nothing moved for
        the idle timeout (see the module docstring) or the batch was cancelled."""
        if wait and self.registry and self._redis.exists(keys.relookup_cancel(self.registry)):
            raise RelookupStopped("cancelled (relookup --cancel)")
        now = time.monotonic()
        finished = 0
        for task_id, meta in self._metas(list(self._pending)).items():
            job = self._pending[task_id]
            status = str(meta.get("status"))
            if status in states.READY_STATES:
                self._finish(task_id, job, meta)
                finished += 1
                continue
            stamp = f"{status}:{meta.get('retries')}"
            if stamp != job.state:
                job.state, job.changed = stamp, now
                job.wake_at = _wake_at(meta)
        if finished or not self._pending or not wait:
            return
        quiet = all(
            now - job.changed > self.idle_timeout_s
            and time.time() > job.wake_at + self.idle_timeout_s
            for job in self._pending.values()
        )
        if quiet:
            untouched = all(job.state.startswith(states.PENDING) for job in self._pending.values())
            raise RelookupStopped(
                f"no job progressed for {self.idle_timeout_s:g} s. "
                + (
                    "Is a worker consuming the 'relookup' queue? Start one with: "
                    "contact-lookup worker -Q relookup"
                    if untouched
                    else "The workers holding them may have died; they come back after "
                    "VISIBILITY_TIMEOUT."
                )
            )
        time.sleep(POLL_INTERVAL_S)

    def _finish(self, task_id: str, job: _Job, meta: dict[str, Any]) -> None:
        del self._pending[task_id]
        result = meta.get("result")
        if meta.get("status") != states.SUCCESS or not isinstance(result, dict):
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
        self._write({"line": job.line, "phoneNumber": job.number, "result": result})
        self.app.backend.forget(task_id)  # the result lives on in --out
        if self.registry:
            self._redis.srem(keys.relookup_jobs(self.registry), task_id)

    def stop(self) -> int:
        """Write what finished meanwhile and revoke the rest (never a finished job).
        Returns how many jobs were revoked."""
        if not self._pending:
            return 0
        self._collect(wait=False)
        unfinished = list(self._pending)
        if unfinished:
            self.app.control.revoke(unfinished)
            if self.registry:
                self._redis.srem(keys.relookup_jobs(self.registry), *unfinished)
        self._pending.clear()
        return len(unfinished)

    def _write(self, record: dict[str, Any]) -> None:
        self.out.write(json.dumps(record) + "\n")
        self.out.flush()
        self.summary.count(record)
        if self.progress is not None:
            self.progress.update(1)


def _wake_at(meta: dict[str, Any]) -> float:
    """A deferred job's wake-up time (Unix seconds) from its RETRY state, else 0."""
    reason = meta.get("result")
    if meta.get("status") == states.RETRY and isinstance(reason, dict):
        args = reason.get("exc_message")
        if reason.get("exc_type") == "Deferred" and isinstance(args, list) and len(args) > 1:
            with_until = args[1]
            return float(with_until) if isinstance(with_until, int | float) else 0.0
    return 0.0


def cancel(app: Celery, out_path: str) -> int | None:
    """``relookup --cancel OUT``: stop the batch writing OUT and revoke its queued jobs.

    Returns how many jobs were revoked; finished ones are left alone (the batch writing OUT,
    if it still runs, writes them before it stops). None, having changed nothing, when no
    batch writes OUT: none running (``keys.relookup_active``) and no job of one outstanding."""
    registry = os.path.abspath(out_path)
    client: redis.Redis = app.backend.client
    members = client.smembers(keys.relookup_jobs(registry))
    if not members and not client.exists(keys.relookup_active(registry)):
        return None
    client.set(keys.relookup_cancel(registry), "1", ex=CANCEL_TTL_S)
    ids = sorted(m.decode() if isinstance(m, bytes) else str(m) for m in members)
    backend = app.backend
    unfinished = []
    for i in range(0, len(ids), 500):
        chunk = ids[i : i + 500]
        raws = client.mget([backend.get_key_for_task(t) for t in chunk])
        for task_id, raw in zip(chunk, raws, strict=True):
            if not raw or backend.decode(raw).get("status") not in states.READY_STATES:
                unfinished.append(task_id)
    if unfinished:
        app.control.revoke(unfinished)
    return len(unfinished)


def resume_command(argv: list[str]) -> str:
    """The command line that resumes this batch (the same one: --out makes it resume)."""
    return shlex.join(["contact-lookup", *argv])


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
    budget_of: Callable[[int], Budget] | None = None,
    argv: list[str] | None = None,
    err: TextIO | None = None,
    column: str | None = None,
) -> int:
    """The relookup command (exit status: see the module docstring)."""
    err = err or sys.stderr
    service.config.connection(connection)  # ConfigError (exit 2) for an unknown connection
    data = sys.stdin.buffer.read() if source == "-" else Path(source).read_bytes()
    rows = batchfile.read_rows(data, name=source, column=column)
    path = Path(out_path) if out_path else None
    done = done_lines(path) if path else {}
    registry = os.path.abspath(out_path) if out_path else None
    with _writing(app, registry):
        return _run(
            app,
            service,
            connection,
            rows,
            path,
            done,
            registry,
            refresh=refresh,
            window=window,
            idle_timeout_s=idle_timeout_s,
            budget_of=budget_of,
            argv=argv,
            err=err,
        )


@contextmanager
def _writing(app: Celery, registry: str | None) -> Iterator[None]:
    """While the batch writing ``registry`` (its --out path) runs, ``keys.relookup_active``
    says so; a cancel left by an earlier run of it is forgotten."""
    if registry is None:
        yield
        return
    client: redis.Redis = app.backend.client
    client.delete(keys.relookup_cancel(registry))  # a new run of this batch
    client.set(keys.relookup_active(registry), "1", ex=JOBS_TTL_S)
    try:
        yield
    finally:
        client.delete(keys.relookup_active(registry))


def _run(
    app: Celery,
    service: LookupService,
    connection: str,
    rows: list[tuple[int, str, str]],
    path: Path | None,
    done: dict[int, str],
    registry: str | None,
    *,
    refresh: bool,
    window: int,
    idle_timeout_s: float,
    budget_of: Callable[[int], Budget] | None,
    argv: list[str] | None,
    err: TextIO,
) -> int:
    if budget_of is not None:
        todo, terms = _to_look_up(service, connection, rows, done)
        print(estimate_text(todo, budget_of(terms), connection), file=err)
    out: TextIO
    if path:
        if path.exists() and path.stat().st_size and not path.read_bytes().endswith(b"\n"):
            with path.open("a", encoding="utf-8") as f:
                f.write("\n")  # an interrupted run left half a line: start on a new one
        out = path.open("a", encoding="utf-8")
    else:
        out = sys.stdout
    bar = tqdm(total=len(rows), file=err, unit="row", desc="relookup", mininterval=0.5)
    batch = Batch(
        app,
        service,
        connection,
        out,
        refresh=refresh,
        window=window,
        idle_timeout_s=idle_timeout_s,
        progress=bar,
        registry=registry,
    )
    code = 0
    stop_reason = ""
    try:
        batch.run(rows, done)
    except RelookupStopped as exc:
        stop_reason, code = f"stopped: {exc}", 1
    except KeyboardInterrupt:
        stop_reason, code = "interrupted (Ctrl-C)", 130
    try:
        revoked = batch.stop() if code else 0
    finally:
        bar.close()
        if out is not sys.stdout:
            out.close()
    _report(batch, path, rows, stop_reason, revoked, argv, err)
    if code == 0 and path is not None and not _complete(path, rows):
        code = 1
    return code


def _to_look_up(
    service: LookupService,
    connection: str,
    rows: list[tuple[int, str, str]],
    done: dict[int, str],
) -> tuple[int, int]:
    """(distinct valid numbers not yet in --out, search terms per number: E.164 and each
    format)."""
    numbers: set[str] = set()
    terms = 1
    for line, raw, kind in rows:
        if kind != "number" or line in done:
            continue
        try:
            prepared = service.prepare(connection, LookupRequest(raw, purpose="relookup"))
        except InvalidInput:
            continue
        numbers.add(prepared.number)
        terms = max(terms, len(prepared.terms))  # "at most": the number with the most
    return len(numbers - set(done.values())), terms


def _complete(path: Path, rows: list[tuple[int, str, str]]) -> bool:
    written = done_lines(path)
    return all(line in written for line, _, _ in rows)


def _report(
    batch: Batch,
    path: Path | None,
    rows: list[tuple[int, str, str]],
    stop_reason: str,
    revoked: int,
    argv: list[str] | None,
    err: TextIO,
) -> None:
    say: Callable[[str], None] = lambda line: print(line, file=err)  # noqa: E731
    if stop_reason:
        say(
            f"contact-lookup: relookup {stop_reason}; {revoked} queued jobs revoked, "
            "finished ones written"
        )
    say(batch.summary.text("relookup (this run)" if path else "relookup"))
    if path is not None:
        written = done_lines(path)
        missing = sum(1 for line, _, _ in rows if line not in written)
        whole = Summary.of_file(path)
        say(
            whole.text(f"relookup ({path})")
            + (f"; {missing} rows still to do" if missing else "; every row done")
        )
        if missing and argv:
            say(f"resume with: {resume_command(argv)}")
