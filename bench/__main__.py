"""``python -m bench [N ...]``: run the benchmarks (all, or those numbered), print a table and
write ``bench/RESULTS.md``.

A benchmark whose component is not in the tree yet is reported as skipped, with what it
needs; a benchmark that fails is reported with its error and the others still run. Exit
status 1 only when a benchmark failed to run: a missed target is a result, not an error.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
import time
import traceback
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

from bench.harness import (
    BENCH_DB,
    Context,
    MachineLoad,
    Outcome,
    base_redis_url,
    db_url,
    fmt,
    machine,
)

# number -> (title, "module:function", modules it needs)
BENCHMARKS: dict[int, tuple[str, str, tuple[str, ...]]] = {
    1: ("Call pop from cache (producer fast path)", "bench.callpop_bench:fast_path",
        ("producers.pipeline",)),
    2: ("Cache-miss lookup latency", "bench.worker_bench:lookup_latency", ()),
    3: ("Cache-miss throughput", "bench.worker_bench:throughput", ()),
    4: ("I/O-bound throughput", "bench.worker_bench:io_bound", ()),
    5: ("Re-lookup under a shared rate limit", "bench.ratelimit_bench:relookup",
        ("contact_lookup.core.ratelimit", "contact_lookup.core.guard")),
    6: ("Coalescing", "bench.coalesce_bench:coalescing",
        ("contact_lookup.core.coalesce", "contact_lookup.core.guard")),
    7: ("Worker memory", "bench.worker_bench:memory", ()),
    8: ("Webhook acknowledgement", "bench.webhook_bench:webhook", ("producers.webhook",)),
    9: ("OAuth token refresh", "bench.auth_bench:token_refresh", ("contact_lookup.auth.manager",)),
    10: ("Fan-out: cache-miss call pop vs a 150 ms CRM", "bench.fanout_bench:fan_out_call_pop",
        ("contact_lookup.connectors.fanout",)),
    11: ("Against plain Celery", "bench.fanout_bench:plain_celery", ()),
    12: ("Worker layout: 1 vs 2 processes", "bench.fanout_bench:worker_layout", ()),
    13: ("gevent vs threads", "bench.fanout_bench:gevent_vs_threads", ("gevent",)),
    14: ("Flower events of cached call pops", "bench.flower_events_bench:cost_on_the_pop",
        ("producers.flower_events",)),
    15: ("Several hosts: 1, 2, 3 netns hosts", "bench.hosts_bench:several_hosts", ()),
}  # fmt: skip

RESULTS = Path(__file__).resolve().parent / "RESULTS.md"


def _load(spec: str) -> Callable[[Context], Outcome]:
    module, _, name = spec.partition(":")
    fn: Callable[[Context], Outcome] = getattr(importlib.import_module(module), name)
    return fn


def _missing(modules: tuple[str, ...]) -> list[str]:
    out = []
    for module in modules:
        try:
            importlib.import_module(module)
        except ImportError:
            out.append(module)
    return out


def run_one(number: int, ctx: Context) -> Outcome:
    title, spec, needs = BENCHMARKS[number]
    missing = _missing(needs)
    if missing:
        return Outcome(number, title, skipped=f"needs {', '.join(missing)} (not there yet)")
    started = time.perf_counter()
    load = MachineLoad()
    try:
        outcome = _load(spec)(ctx)
    except Exception as exc:
        outcome = Outcome(number, title, error=f"{type(exc).__name__}: {exc}")
        traceback.print_exc()
    finally:
        ctx.flush()
    outcome.seconds = time.perf_counter() - started
    if outcome.seconds >= 2:  # a shorter span says nothing about what else ran
        outcome.notes.append(f"Contention: {load.summary()}.")
    return outcome


def verdict(met: bool | None) -> str:
    return {True: "met", False: "NOT met", None: "-"}[met]


def table(outcomes: list[Outcome]) -> list[list[str]]:
    rows = []
    for o in outcomes:
        if o.skipped or o.error:
            rows.append([str(o.number), o.title, "skipped" if o.skipped else "error", "", "", "",
                         "", o.skipped or o.error or ""])  # fmt: skip
            continue
        for f in o.figures:
            ratio = f.ratio
            rows.append(
                [
                    str(o.number),
                    f.name,
                    fmt(f.value, f.unit),
                    f"{fmt(f.baseline, f.unit)} ({f.baseline_name})" if f.baseline_name else "-",
                    f"{ratio:.2f}x" if ratio is not None else "-",
                    f.target or "-",
                    verdict(f.met),
                    "",
                ]
            )
    return rows


HEADER = ["#", "figure", "value", "baseline (same run)", "ratio", "target", "met", "note"]


def print_table(outcomes: list[Outcome]) -> None:
    rows = [HEADER, *table(outcomes)]
    widths = [min(60, max(len(r[i]) for r in rows)) for i in range(len(HEADER))]
    for r in rows:
        print("  ".join(cell[:60].ljust(w) for cell, w in zip(r, widths, strict=True)))


def markdown(outcomes: list[Outcome], desc: dict[str, str], seconds: float, argv: str) -> str:
    lines = [
        "# Benchmark results",
        "",
        f"Written by `python -m bench{argv}` on {datetime.now(UTC):%Y-%m-%d %H:%M} UTC; "
        f"the run took {seconds:.0f} s. Every baseline was measured in the same run on the "
        "same machine; nothing here is copied from an earlier run.",
        "",
        "## Machine",
        "",
        *[f"- {k}: {v}" for k, v in desc.items()],
        "- load average at end: " + " ".join(f"{x:.2f}" for x in os.getloadavg()),
        "",
        "## Targets",
        "",
        *[f"- {o.number}. {o.title}: {_state(o)}" for o in outcomes],
        "",
        "## Figures",
        "",
        "ratio = value / baseline; both measured in this run. Latencies are round trips as "
        "the sender sees them; rates are steady-state completions per second.",
        "",
        "| " + " | ".join(HEADER[:-1]) + " |",
        "|" + "---|" * (len(HEADER) - 1),
    ]
    for r in table(outcomes):
        cells = r[:-1] if not r[-1] else [*r[:2], r[2], r[-1], "", "", ""]
        lines.append("| " + " | ".join(c.replace("|", "/") for c in cells) + " |")
    lines += ["", "## Notes", ""]
    for o in outcomes:
        lines.append(f"### {o.number}. {o.title} ({_state(o)}, {o.seconds:.0f} s)")
        lines.append("")
        if o.skipped or o.error:
            lines.append(f"- {o.skipped or o.error}")
        lines += [f"- {n}" for n in o.notes]
        lines.append("")
    return "\n".join(lines)


def _state(o: Outcome) -> str:
    if o.skipped:
        return "skipped"
    if o.error:
        return "error"
    return {True: "target met", False: "target NOT met", None: "no target"}[o.met]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    p.add_argument("numbers", nargs="*", type=int, help="benchmarks to run (default: all)")
    p.add_argument("--no-write", action="store_true", help="do not write bench/RESULTS.md")
    args = p.parse_args(argv)
    selected = sorted(set(args.numbers)) or sorted(BENCHMARKS)
    unknown = [n for n in selected if n not in BENCHMARKS]
    if unknown:
        p.error(f"unknown benchmark(s) {unknown}; known: {sorted(BENCHMARKS)}")
    ctx = Context(db_url(BENCH_DB, base_redis_url()))
    started = time.perf_counter()
    outcomes: list[Outcome] = []
    try:
        desc = machine(ctx.redis_url)
        for key, value in desc.items():
            print(f"{key}: {value}")
        ctx.flush()
        for number in selected:
            print(f"\n== {number}. {BENCHMARKS[number][0]}", flush=True)
            outcome = run_one(number, ctx)
            outcomes.append(outcome)
            print_table([outcome])
            for note in outcome.notes:
                print(f"   - {note}")
            print(f"   ({outcome.seconds:.1f} s)", flush=True)
    finally:
        ctx.flush()
        ctx.cleanup()
    seconds = time.perf_counter() - started
    print(f"\n== Summary ({seconds:.0f} s)")
    print_table(outcomes)
    if not args.no_write:
        suffix = "".join(f" {n}" for n in args.numbers)
        RESULTS.write_text(markdown(outcomes, desc, seconds, suffix), encoding="utf-8")
        print(f"\nwrote {RESULTS}")
    # A missed target is a result, reported above; only a benchmark that could not run fails.
    return 1 if any(o.error for o in outcomes) else 0


if __name__ == "__main__":
    sys.exit(main())
