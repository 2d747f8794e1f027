"""Benchmark 15: worker processes on 1, 2 and 3 "hosts" (Linux network namespaces,
bench/netns.py), each reaching the broker Redis and the CRM simulator only over its veth.

One worker process per host (``--pool threads -c 4``), started one after another: the batch
with 1 host runs, a second host joins, the batch with 2 hosts runs, and so on. The CRM is the
Clio simulator on the bridge at 100 ms per request, its rate limit (200 per second) above the
load the hosts can offer (3 x 40 per second), the connection's shared limiter set to the same
budget: "while the CRM's budget allows". Figures:

- lookups per second with N hosts as a ratio of linear (N x the rate of 1 host, same run;
  target >= 0.85x), the rate of 1 host against its ideal (4 threads / 100 ms);
- the CRM's 429 answers during those batches (target 0: the limiter holds the budget);
- the 3 hosts against a CRM limited to 20 per second (below what they offer), through a
  connection whose limiter has the same budget: the rate against the budget, and 429s.

Rates are taken from the results' completion times (``date_done``), after the first wave.
Needs root and ``ip netns`` (as CI has); without them it is reported as skipped.
"""

from __future__ import annotations

import contextlib
import math
from typing import Any

from bench.harness import (
    RC_ACCOUNT,
    SIM_TOKEN,
    Context,
    Figure,
    Outcome,
    Worker,
    done_times,
    numbers,
    seed_for,
    send_lookup,
    steady_rate,
    wait_all_done,
)
from bench.netns import SKIP_REASON, Hosts, available, bridge_redis
from contact_lookup.core.request import LookupRequest
from crmsim.clio import SIMULATOR as Clio
from tasks.celery_app import ContactLookupCelery

THREADS = 4  # per host: 40 lookups/s at 100 ms, well within one core
LATENCY_S = 0.1
HOSTS = (1, 2, 3)
PER_HOST = 160  # lookups per host per batch: ~4 s of work
BUDGET = 200  # requests per second the CRM allows during the scaling batches
NARROW = 20  # ... and during the limiter batch, below the 3 hosts' 120
NARROW_JOBS = 80
TARGET = 0.85


class HostWorker(Worker):
    """bench.harness's worker process, run inside one host's network namespace."""

    def __init__(self, hosts: Hosts, index: int, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.hosts, self.index = hosts, index

    @property
    def command(self) -> list[str]:
        return self.hosts.command(self.index, super().command)


def connection(name: str, url: str, token_env: str, rate_limit: str) -> str:
    return "\n".join(
        [
            f"[connections.{name}]",
            'crm = "clio"',
            f'base_url = "{url}"',
            f'token_env = "{token_env}"',
            f'rc_account = "{RC_ACCOUNT}"',
            'formats = ""',
            'region = "US"',
            f'rate_limit = "{rate_limit}"',
        ]
    )


def batch(app: ContactLookupCelery, conn: str, nums: list[str], skip: int) -> float:
    """Send cache-miss lookups of ``nums``; completions per second once all are done."""
    ids = [
        send_lookup(app, conn, LookupRequest(n, purpose="call_log", force_refresh=True)).id
        for n in nums
    ]
    metas = wait_all_done(app, ids, 120)
    bad = [m for m in metas if m.get("status") != "SUCCESS" or not m["result"]["successful"]]
    if bad:
        raise RuntimeError(f"{len(bad)} of {len(ids)} lookups failed: {bad[0]}")
    return steady_rate(done_times(metas), skip)


def several_hosts(ctx: Context) -> Outcome:
    out = Outcome(15, "Workers on 1, 2 and 3 network-namespace hosts, 100 ms CRM")
    if not available():
        print(f"skipped: {SKIP_REASON}")
        out.skipped = SKIP_REASON
        return out
    nums = numbers(40_000, PER_HOST * sum(HOSTS) + THREADS * 8 + NARROW_JOBS)
    with contextlib.ExitStack() as stack:
        hosts = stack.enter_context(Hosts(max(HOSTS)))
        broker = bridge_redis(hosts)
        stack.callback(broker.cleanup)
        sim = Clio(
            seed_for(nums),
            token=SIM_TOKEN,
            latency_s=LATENCY_S,
            rate_limit=(BUDGET, 1.0),
            host=hosts.gateway,
        ).start()
        stack.callback(sim.stop)
        crm_url = f"http://{hosts.gateway}:{sim.port}"
        config = ctx.write_config(
            connection("wide", crm_url, sim.token_env, f"{BUDGET}/1") + "\n",
            connection("narrow", crm_url, sim.token_env, f"{NARROW}/1") + "\n",
        )
        inside = f"redis://{hosts.gateway}:{broker.port}/0"
        env = ctx.env(config, {**{sim.token_env: SIM_TOKEN}, "REDIS_URL": inside})
        app = ctx.app(env)
        stack.callback(app.close)
        running: list[HostWorker] = []
        rates: dict[int, float] = {}
        rest = list(nums)
        for count in HOSTS:
            while len(running) < count:
                i = len(running)
                worker = HostWorker(
                    hosts, i, ctx, env, queues=["call_log"], concurrency=THREADS, name=f"host{i}"
                )
                worker.start(app)
                running.append(worker)
                stack.callback(worker.stop)
            warm, rest = rest[: THREADS * 2], rest[THREADS * 2 :]
            batch(app, "wide", warm, 0)  # the new host's connections, imports, scripts
            jobs, rest = rest[: PER_HOST * count], rest[PER_HOST * count :]
            rates[count] = batch(app, "wide", jobs, THREADS * count)
        with sim.lock:
            wide_429s = sim.rate_limited
        sim.set_rate_limit((NARROW, 1.0))
        with sim.lock:
            rejected_before = sim.rate_limited
        narrow_rate = batch(app, "narrow", rest[:NARROW_JOBS], THREADS * len(running))
        with sim.lock:
            narrow_429s = sim.rate_limited - rejected_before
    ideal = THREADS / LATENCY_S
    out.figures.append(
        Figure("1 host: lookups/s", rates[1], "lookups/s", ideal, "ideal: 4 threads / 100 ms")
    )
    for count in HOSTS[1:]:
        linear = count * rates[1]
        ratio = rates[count] / linear if linear and not math.isnan(rates[count]) else math.nan
        out.figures.append(
            Figure(
                f"{count} hosts: lookups/s",
                rates[count],
                "lookups/s",
                linear,
                f"linear: {count} x 1 host",
                f">= {TARGET}x",
                ratio >= TARGET,
            )
        )
    out.figures.append(
        Figure("CRM 429s in the scaling batches", wide_429s, "", None, "", "0", wide_429s == 0)
    )
    out.figures.append(
        Figure(
            f"3 hosts, CRM limited to {NARROW}/s: lookups/s",
            narrow_rate,
            "lookups/s",
            NARROW,
            "the CRM's budget",
        )
    )
    out.figures.append(
        Figure(f"CRM 429s, 3 hosts vs {NARROW}/s", narrow_429s, "", None, "", "0", narrow_429s == 0)
    )
    out.notes.append(
        f"One worker process per host (`--pool threads -c {THREADS}`, queue call_log), each "
        "in its own network namespace reaching the broker Redis and the Clio simulator only "
        f"over a veth and a bridge; {PER_HOST} cache-miss lookups per host per batch after a "
        f"warm-up; simulator in the benchmark's process at {LATENCY_S * 1000:.0f} ms per "
        f"request, rate-limited to {BUDGET}/s (the connection's limiter the same). Every host "
        "shares this machine's cores with the broker, the simulator and the driver, so the "
        "ratio to linear is a floor for separate machines."
    )
    return out
