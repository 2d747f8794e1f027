"""Benchmark 14: what making a cached call pop visible in Flower costs the pop.

The webhook answers a cached call pop with ``EventPipeline.handle`` and then calls
``producers.flower_events.cached_pops``, which only queues the pop for a background thread
that sends the three Flower task events. Measured, interleaved on fresh ringing-call
notifications with a cached match: ``handle`` alone (the baseline) and ``handle`` plus
``cached_pops`` (what the webhook now does before answering), while the sending thread runs.
"""

from __future__ import annotations

import time

from bench.harness import (
    Context,
    Figure,
    Outcome,
    SimProcess,
    connection_toml,
    environ,
    ms,
    numbers,
    percentile,
    seed_for,
)
from bench.notifications import telephony
from contact_lookup.compose import Runtime
from contact_lookup.core.request import LookupRequest
from contact_lookup.settings import Settings

SAMPLES = 300
WARM_UP = 30


def cost_on_the_pop(ctx: Context) -> Outcome:
    from producers import flower_events
    from producers.pipeline import build_pipeline

    out = Outcome(14, "Flower events of a cached call pop: handle + cached_pops vs handle")
    warm = WARM_UP
    nums = numbers(500_000, 2 * (warm + SAMPLES))
    ctx.flush()
    with SimProcess("clio", seed_for(nums, every=1)) as sim:
        config = ctx.write_config(connection_toml("bench", sim), default="bench")
        env = ctx.env(config, sim.env())
        settings = Settings.from_env(env)
        runtime = Runtime(settings)
        with environ(sim.env()):
            for number in nums:
                assert runtime.service.lookup("bench", LookupRequest(number))["successful"]
        producer = build_pipeline(settings)
        alone: list[float] = []
        with_events: list[float] = []
        try:
            for i in range(warm + SAMPLES):
                pair = [(alone, nums[2 * i]), (with_events, nums[2 * i + 1])]
                for arm, number in pair if i % 2 else pair[::-1]:  # each arm first in turn
                    body = telephony(number, session=f"s-bench-flower-{number}")
                    started = time.perf_counter()
                    outcomes = producer.handle(body, started=time.monotonic())
                    if arm is with_events:
                        flower_events.cached_pops(producer.app, outcomes, time.monotonic())
                    elapsed = time.perf_counter() - started
                    assert [o.action for o in outcomes] == ["answered-from-cache"], outcomes
                    if i >= warm:
                        arm.append(elapsed)
            sender = flower_events._sender(producer.app)
            sender.flush(30)
            undelivered = sender.pending.unfinished_tasks
        finally:
            producer.app.close()
    base50, base99 = ms(percentile(alone, 50)), ms(percentile(alone, 99))
    p50, p99 = ms(percentile(with_events, 50)), ms(percentile(with_events, 99))
    out.figures += [
        Figure("handle + cached_pops p50", p50, "ms", base50, "handle alone p50", "<= 1.05x",
               p50 <= base50 * 1.05),
        Figure("handle + cached_pops p99", p99, "ms", base99, "handle alone p99"),
    ]  # fmt: skip
    out.notes.append(
        f"{SAMPLES} pairs of ringing-call notifications after {warm} warm-up pairs, each with "
        "a cached match, the two arms interleaved (each first in every other pair) in one "
        "process against the bench Redis; "
        f"the events of {SAMPLES + warm} pops went out on the background thread meanwhile "
        f"({undelivered} still queued after a 30 s flush)."
    )
    return out
