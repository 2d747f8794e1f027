"""Benchmark 1: a call pop already in the cache, answered by the producer's fast path.

A ringing-call notification goes through ``producers.pipeline.EventPipeline.handle`` (the code the
webhook and ``replay`` run): its dedupe/ordering Lua script, one cache GET, one PUBLISH on
``callpop:{account}:{extension}``. Latency is measured up to the moment a subscriber (what
``contact-lookup watch`` and a CTI client do) holds the pop; ``handle`` alone is reported too.
The baseline is a no-op Celery task's round trip on a call-pop worker, interleaved.
"""

from __future__ import annotations

import json
import threading
import time
from typing import Any

import redis

from bench.harness import (
    PHONE_PARSING,
    REDIS_CALLS,
    SETTLE_S,
    Context,
    Figure,
    Outcome,
    SimProcess,
    Worker,
    connection_toml,
    environ,
    ms,
    numbers,
    percentile,
    profile,
    round_trip,
    running,
    seed_for,
    send_noop,
    shares,
)
from bench.notifications import telephony
from contact_lookup.compose import Runtime
from contact_lookup.core.request import LookupRequest
from contact_lookup.settings import Settings

SAMPLES = 300
WARM_UP = 30


class PopListener:
    """Subscribes to every call-pop channel; records when each session's pop arrives."""

    def __init__(self, url: str) -> None:
        self.client = redis.Redis.from_url(url)
        self.pubsub = self.client.pubsub(ignore_subscribe_messages=True)
        self.pubsub.psubscribe("callpop:*")
        self.arrived: dict[str, float] = {}
        self.events: dict[str, threading.Event] = {}
        self.lock = threading.Lock()
        self._stop = threading.Event()
        self.thread = threading.Thread(target=self._run, name="bench-pop-listener", daemon=True)
        self.thread.start()

    def expect(self, session: str) -> threading.Event:
        with self.lock:
            event = self.events[session] = threading.Event()
        return event

    def _run(self) -> None:
        while not self._stop.is_set():
            message = self.pubsub.get_message(timeout=0.5)
            if not message or message.get("type") != "pmessage":
                continue
            now = time.perf_counter()
            session = json.loads(message["data"]).get("telephonySessionId")
            with self.lock:
                self.arrived[session] = now
                event = self.events.get(session)
            if event is not None:
                event.set()

    def close(self) -> None:
        self._stop.set()
        self.thread.join(2)
        self.pubsub.close()
        self.client.close()


def fast_path(ctx: Context) -> Outcome:
    from producers.pipeline import build_pipeline

    out = Outcome(1, "Call pop from cache through the producer fast path vs no-op round trip")
    nums = numbers(400_000, WARM_UP + SAMPLES)
    ctx.flush()
    with SimProcess("clio", seed_for(nums, every=1)) as sim:
        config = ctx.write_config(connection_toml("bench", sim), default="bench")
        env = ctx.env(config, sim.env())
        settings = Settings.from_env(env)
        app = ctx.app(env)
        # Fill the cache the way production does: a real lookup of each number.
        runtime = Runtime(settings)
        with environ(sim.env()):
            for number in nums:
                result = runtime.service.lookup("bench", LookupRequest(number))
                assert result["matchedContactInfo"], result
        producer = build_pipeline(settings)
        listener = PopListener(ctx.redis_url)
        worker = Worker(ctx, env, queues=["call_pop"], concurrency=16, name="fastpath")
        fast: list[float] = []
        handle: list[float] = []
        noop: list[float] = []
        actions: dict[str, int] = {}
        try:
            with running(worker, app):
                for i, number in enumerate(nums):
                    seconds, _ = round_trip(send_noop, app, "bench", LookupRequest(number))
                    body = telephony(number, session=f"s-bench-pop-{i:06d}")
                    session = body["body"]["telephonySessionId"]
                    arrived = listener.expect(session)
                    started = time.perf_counter()
                    outcomes = producer.handle(body)
                    handled = time.perf_counter()
                    if not arrived.wait(5):
                        raise RuntimeError(f"no call pop published for {session}")
                    time.sleep(SETTLE_S)
                    for o in outcomes:
                        actions[o.action] = actions.get(o.action, 0) + 1
                    if i >= WARM_UP:
                        noop.append(seconds)
                        handle.append(handled - started)
                        fast.append(listener.arrived[session] - started)
            # Where the fast path's time goes: the same notifications again (now duplicates
            # would short-cut, so fresh sessions), in this process, under cProfile.
            bodies = iter(telephony(n, session=f"s-bench-prof-{i:06d}") for i, n in enumerate(nums))
            prof = profile(
                lambda: producer.handle(next(bodies)),
                {"Redis calls": REDIS_CALLS, "phone number parsing": PHONE_PARSING},
                runs=len(nums) // 2,
            )
        finally:
            listener.close()
            producer.app.close()
            app.close()
    base50, base99 = ms(percentile(noop, 50)), ms(percentile(noop, 99))
    p50, p99 = ms(percentile(fast, 50)), ms(percentile(fast, 99))
    ctx.memo["callpop_p50_ms"] = p50  # benchmark 11 sets it against plain Celery
    out.figures += [
        Figure(
            "call pop p50, event in -> pop at a subscriber",
            p50,
            "ms",
            base50,
            "no-op task round trip p50",
            "<= 0.05x (20x faster)",
            p50 * 20 <= base50,
        ),
        Figure(
            "call pop p99, event in -> pop at a subscriber",
            p99,
            "ms",
            base99,
            "no-op round trip p99",
        ),
        Figure(
            "EventPipeline.handle p50 (until it returns)",
            ms(percentile(handle, 50)),
            "ms",
            base50,
            "no-op task round trip p50",
        ),
    ]
    out.notes.append(
        f"{SAMPLES} ringing-call notifications after {WARM_UP} warm-up, each with a cached "
        f"match, interleaved with no-op round trips on a `--pool threads -c 16` call_pop "
        f"worker. Actions: {_actions(actions)}. The fast path is one Redis round trip: the "
        "event script (dedupe, party state, once-key) also reads the cache and PUBLISHes; "
        "the subscriber is a thread of this process on `callpop:*`."
    )
    out.notes.append(f"Profile of EventPipeline.handle on the fast path: {shares(prof)}.")
    if not p50 * 20 <= base50:
        out.notes.append(
            f"Below target: {base50 / p50:.1f}x faster at p50, not 20x; 20x would need the "
            f"pop at the subscriber within {base50 / 20:.2f} ms. The fast path is already one "
            "Redis round trip; the rest is Python: the plan (the notification's JSON, both "
            "numbers parsed by phonenumbers), the script call, the subscriber's own thread "
            "taking the GIL, and building the Outcome. What it would take: a plan without "
            "phonenumbers for numbers already in E.164, and the subscriber in another "
            "process."
        )
    return out


def _actions(actions: dict[str, Any]) -> str:
    return ", ".join(f"{k} {v}" for k, v in sorted(actions.items()))
