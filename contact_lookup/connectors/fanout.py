"""Fan-out: a lookup's independent CRM requests sent concurrently, within a concurrency bound.

A cache-miss lookup's time is its slowest round trip, not the sum of them: ``fan_out`` runs
the independent calls of one lookup (formats x entities x fields) on a process-wide thread
pool, at most ``max_concurrency`` at a time, and returns their results **in input order**,
whatever order they finished in, so the caller merges them in the spec's order (E.164
first, then formats).

- **Bound.** ``max_concurrency`` bounds one lookup; ``gate`` (one ``threading.Semaphore`` per
  connection and process, see ``Connector.gate``) bounds every lookup of the process
  together, so a worker with 16 threads never has more than the connection's
  ``max_concurrency`` requests in flight. Workers in other processes have their own gate.
- **All or nothing.** When a call raises, no further call is started, the calls already in
  flight are waited for (no orphaned request outlives the lookup), and the exception of the
  earliest failed call (input order) is raised: a failing request fails the lookup as a
  whole and no partial answer exists to be cached.
- **Paid before sent.** Each call runs its own requests (a search and any pages or
  enrichment reads that depend on its answer, which follow as soon as it arrives), so
  anything that pays the shared rate limiter per request from inside the request path pays
  on the thread that sends, before it sends.
- **The caller's context goes along.** Each call runs in a copy of the caller's
  ``contextvars`` context, so whatever the lookup set there (a per-request limiter charge,
  a task id for the logs) is seen by the thread that sends.
- One call, or ``max_concurrency == 1``, runs on the caller's thread: no thread hand-off.

Threads, not asyncio: the connectors are synchronous ``requests`` code and a Celery threads
or gevent worker runs them; under gevent's monkey-patching the pool's threads are greenlets.
"""

from __future__ import annotations

import contextvars
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from typing import TypeVar

from contact_lookup.model.config import MAX_CONCURRENCY_CAP

T = TypeVar("T")

# Threads of the shared pool, created as needed: room for every connection's gate to be full
# at once on a worker with many threads (4 connections at the cap); idle threads cost a
# little memory only. Every call holds its thread only while its own requests (each with a
# timeout) run.
POOL_THREADS = 4 * MAX_CONCURRENCY_CAP

_pool: ThreadPoolExecutor | None = None
_pool_lock = threading.Lock()


def shared_pool() -> ThreadPoolExecutor:
    """The process's fan-out pool, created on first use (after a fork, in the child)."""
    global _pool
    with _pool_lock:
        if _pool is None:
            _pool = ThreadPoolExecutor(max_workers=POOL_THREADS, thread_name_prefix="crm-fanout")
        return _pool


def _gated(call: Callable[[], T], gate: threading.Semaphore | None) -> Callable[[], T]:
    if gate is None:
        return call

    def run() -> T:
        with gate:
            return call()

    return run


def fan_out(
    calls: Sequence[Callable[[], T]],
    max_concurrency: int,
    *,
    gate: threading.Semaphore | None = None,
    pool: ThreadPoolExecutor | None = None,
) -> list[T]:
    """Every call's result, in the order of ``calls``; at most ``max_concurrency`` at once.

    Raises the exception of the earliest failed call once the calls in flight have finished;
    calls not yet started when one fails are never started. ``ValueError`` when
    ``max_concurrency`` is below 1.
    """
    if max_concurrency < 1:
        raise ValueError(f"max_concurrency must be at least 1 (got {max_concurrency})")
    gated = [_gated(call, gate) for call in calls]
    if len(gated) <= 1 or max_concurrency == 1:
        return [call() for call in gated]
    executor = pool or shared_pool()
    results: dict[int, T] = {}
    errors: dict[int, BaseException] = {}
    running: dict[Future[T], int] = {}
    next_index = 0
    while running or (next_index < len(gated) and not errors):
        while not errors and next_index < len(gated) and len(running) < max_concurrency:
            context = contextvars.copy_context()  # one each: a context runs in one thread
            running[executor.submit(context.run, gated[next_index])] = next_index
            next_index += 1
        done, _ = wait(running, return_when=FIRST_COMPLETED)
        for future in done:
            index = running.pop(future)
            error = future.exception()
            if error is not None:
                errors[index] = error
            else:
                results[index] = future.result()
    if errors:
        raise errors[min(errors)]
    return [results[i] for i in range(len(gated))]
