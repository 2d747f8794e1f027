"""Benchmark 6: 100 concurrent lookups of one number make one CRM request per query format.

Two worker processes of 50 threads each (coalescing works across processes through Redis)
take 100 ``find_contact`` jobs for one number at once; the simulator answers after 300 ms, so
every job is in flight together. The simulator counts the requests per query string. The
baseline is the same 100 lookups with ``debug`` set, which the product never coalesces (a
debug trace must show the lookup's own requests): what the CRM would see without coalescing.
"""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from bench.harness import (
    Context,
    Figure,
    Outcome,
    SimProcess,
    Worker,
    connection_toml,
    numbers,
    seed_for,
    send_lookup,
    wait_all_done,
)
from contact_lookup.core.request import LookupRequest

LOOKUPS = 100
WORKERS = 2
THREADS = 50
LATENCY_S = 1.0  # the leader holds its lock ~2 s (two queries): longer than sending 100 jobs
FORMATS = "(***) ***-****"


def _burst(app: Any, number: str, *, debug: bool = False) -> tuple[list[str], float]:
    """Send LOOKUPS jobs for ``number`` as close together as possible; their ids."""
    query = LookupRequest(number, purpose="call_log", debug=debug)
    started = time.perf_counter()
    with ThreadPoolExecutor(10) as pool:
        ids = list(pool.map(lambda _: send_lookup(app, "bench", query).id, range(LOOKUPS)))
    return ids, time.perf_counter() - started


def coalescing(ctx: Context) -> Outcome:
    out = Outcome(6, f"Coalescing: {LOOKUPS} concurrent lookups of one number")
    match, miss, base = numbers(500_000, 3)
    ctx.flush()
    with SimProcess("clio", seed_for([match]), latency_s=LATENCY_S) as sim:
        config = ctx.write_config(connection_toml("bench", sim, formats=FORMATS))
        env = ctx.env(config, sim.env())
        app = ctx.app(env)
        workers = [
            Worker(ctx, env, queues=["call_log"], concurrency=THREADS, name=f"coalesce{i}")
            for i in range(WORKERS)
        ]
        rounds: dict[str, dict[str, Any]] = {}
        try:
            for w in workers:
                w.start(app)
            for label, number, debug in (
                ("matching number", match, False),
                ("number not in the CRM", miss, False),
                ("without coalescing (debug lookups)", base, True),
            ):
                sim.reset()
                ids, send_s = _burst(app, number, debug=debug)
                started = time.perf_counter()
                task_metas = wait_all_done(app, ids, 60)
                elapsed = time.perf_counter() - started + send_s
                counters = sim.counters()
                results = [m.get("result") or {} for m in task_metas]
                rounds[label] = {
                    "number": number,
                    "per_query": dict(counters["queries"]),
                    "requests": counters["requests"],
                    "ok": sum(1 for r in results if r.get("successful")),
                    "coalesced": sum(
                        1 for r in results if (r.get("extraDataTracking") or {}).get("isCoalesced")
                    ),
                    "cached": sum(
                        1 for r in results if (r.get("extraDataTracking") or {}).get("isCached")
                    ),
                    "answers": len({_ids(r) for r in results}),
                    "send_s": send_s,
                    "elapsed_s": elapsed,
                }
        finally:
            for w in workers:
                w.stop()
            app.close()
    formats = 2  # E.164 plus one format
    baseline = rounds["without coalescing (debug lookups)"]
    base_per_format = baseline["requests"] / formats
    for label in ("matching number", "number not in the CRM"):
        r = rounds[label]
        per_format = max(r["per_query"].values()) if r["per_query"] else 0
        exact = len(r["per_query"]) == formats and all(v == 1 for v in r["per_query"].values())
        out.figures.append(
            Figure(
                f"CRM requests per query format, {label}",
                per_format,
                "",
                base_per_format,
                "same lookups, not coalesced",
                "exactly 1",
                exact and r["ok"] == LOOKUPS,
            )
        )
    for label, r in rounds.items():
        out.notes.append(
            f"{label}: {r['requests']} CRM requests {r['per_query']}; {r['ok']}/{LOOKUPS} "
            f"successful, {r['coalesced']} marked isCoalesced, {r['cached']} from the cache, "
            f"{r['answers']} distinct answer(s); jobs sent in {1000 * r['send_s']:.0f} ms, all "
            f"done in {r['elapsed_s']:.2f} s."
        )
    out.notes.append(
        f"{WORKERS} worker processes `--pool threads -c {THREADS}` on the call_log queue; "
        f"Clio simulator with {1000 * LATENCY_S:.0f} ms latency; connection formats "
        f'"{FORMATS}" (2 queries per lookup).'
    )
    return out


def _ids(result: dict[str, Any]) -> tuple[str, ...]:
    return tuple(str(c.get("id")) for c in result.get("matchedContactInfo") or [])
