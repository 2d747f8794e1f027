"""Workers on several "hosts": each worker process in its own network namespace, reaching the
broker Redis and the CRM simulator (100 ms per request) only over its veth and a bridge
(bench/netns.py, shared with
``make bench``'s several-hosts figure). Measured and asserted:

- throughput with 1, 2 and 3 hosts (figure; target >= 0.85x linear while the CRM allows);
- the shared limiter holding across hosts: a CRM limited below the offered load sees 0 429s;
- coalescing across hosts: concurrent lookups of one number make 1 CRM request;
- a host cut off mid-run (its link down) loses no job: its held jobs come back after the
  visibility timeout and the other host finishes them.

Needs root and ``ip netns`` (CI runs as root); skips locally otherwise, fails under CI.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from bench.netns import SKIP_REASON, Hosts, available, bridge_redis
from contact_lookup.core.request import LookupRequest
from contact_lookup.settings import Settings
from localredis import EmbeddedRedis
from tasks.celery_app import create_app
from tasks.enqueue import enqueue
from tests.fakecrm import FakeCRM, wait_for
from tests.faults.faultkit import Proc, base_env, figure, finished, wait_finished

THREADS = 4  # per host: 40 lookups/s at 100 ms, well within one core
LATENCY_S = 0.1
VISIBILITY_TIMEOUT_S = 5
NUMBERS = [f"+1415557{n:04d}" for n in range(600)]
CONTACTS = [{"id": f"h-{i}", "name": f"Host Test {i}", "phone": n} for i, n in enumerate(NUMBERS)]


@pytest.fixture(scope="module")
def hosts() -> Iterator[Hosts]:
    if not available():
        if os.environ.get("CI"):
            pytest.fail("the multi-host tests need root and ip netns under CI")
        pytest.skip(SKIP_REASON)
    with Hosts(3) as group:
        yield group


@pytest.fixture(scope="module")
def broker(hosts: Hosts) -> Iterator[EmbeddedRedis]:
    """A private Redis on loopback and on the bridge (what the hosts reach)."""
    server = bridge_redis(hosts)
    try:
        yield server
    finally:
        server.cleanup()


class Cluster:
    """The app (in the test, root namespace), the CRM on the bridge, and workers per host."""

    def __init__(self, hosts: Hosts, broker: EmbeddedRedis, tmp: Path, crm: FakeCRM, **conn: str):
        self.hosts, self.tmp, self.crm = hosts, tmp, crm
        inside = f"redis://{hosts.gateway}:{broker.port}/0"
        toml = tmp / "cl.toml"
        lines = [
            "[connections.fake]",
            f'crm = "{FakeCRM.crm}"',
            f'base_url = "http://{hosts.gateway}:{crm.port}"',
            f'token_env = "{crm.token_env}"',
            'rc_account = "111"',
            *(f'{k} = "{v}"' for k, v in conn.items()),
            "[telephony]",  # the settle window below the short visibility timeout
            "settle_seconds = 1",
        ]
        toml.write_text("\n".join(lines) + "\n")
        self.client = redis.Redis(port=broker.port)
        self.client.flushall()
        self.app = create_app(
            Settings(
                redis_url=broker.url,
                broker_url=broker.url,
                result_backend=broker.url,
                cache_url=broker.url,
                state_url=broker.url,
                config_path=str(toml),
                visibility_timeout_s=VISIBILITY_TIMEOUT_S,
            )
        )
        self.env = base_env(
            REDIS_URL=inside,
            CONTACT_LOOKUP_CONFIG=str(toml),
            VISIBILITY_TIMEOUT=str(VISIBILITY_TIMEOUT_S),
            # start-up refuses a visibility timeout not above the longest countdown and a
            # call-pop deadline not below it: both made shorter with it
            RETRY_MAX_DELAY=str(VISIBILITY_TIMEOUT_S - 1),
            CALL_POP_DEADLINE=str(VISIBILITY_TIMEOUT_S - 1),
            CRM_HTTP_TIMEOUT="2",
            **crm.env(),
        )
        self.workers: list[Proc] = []

    def start(self, count: int) -> Cluster:
        for i in range(count):
            argv = [sys.executable, "-m", "celery", "-A", "worker", "worker", "--pool", "threads"]
            argv += ["-c", str(THREADS), "-Q", "call_log", "-n", f"host{i}@%h", "--without-mingle"]
            argv += ["--loglevel", "INFO"]
            proc = Proc(self.hosts.command(i, argv), self.env, self.tmp, f"host{i}-{time.time()}")
            self.workers.append(proc.launch())
        for proc in self.workers:
            proc.wait_until(lambda p=proc: " ready." in p.logs(), 60)  # type: ignore[misc]
        return self

    def send(self, numbers: list[str], *, force: bool = True) -> list[str]:
        return [
            enqueue(self.app, "fake", LookupRequest(n, purpose="call_log", force_refresh=force)).id
            for n in numbers
        ]

    def stop(self) -> None:
        for proc in self.workers:
            proc.stop()
        self.app.close()
        self.client.close()


def run_batch(cluster: Cluster, jobs: int) -> float:
    """Send ``jobs`` cache-miss lookups; the lookups per second until all have results."""
    started = time.monotonic()
    ids = cluster.send(NUMBERS[:jobs])
    done = wait_finished(cluster.client, ids, 120)
    assert len(done) == jobs
    return jobs / (time.monotonic() - started)


def test_throughput_with_one_two_and_three_hosts(
    hosts: Hosts, broker: EmbeddedRedis, tmp_path: Path
) -> None:
    rates: dict[int, float] = {}
    with FakeCRM(CONTACTS, token="hosts-token", latency_s=LATENCY_S, host=hosts.gateway) as crm:
        for count in (1, 2, 3):
            cluster = Cluster(hosts, broker, tmp_path, crm).start(count)  # type: ignore[arg-type]
            try:
                run_batch(cluster, 40)  # warm-up: connections, imports
                rates[count] = run_batch(cluster, 160 * count)
            finally:
                cluster.stop()
    ideal = THREADS / LATENCY_S
    scaling = {n: round(rates[n] / (n * rates[1]), 2) for n in rates}
    figure(
        "hosts_throughput",
        per_host_ideal=ideal,
        **{f"hosts_{n}": round(r, 1) for n, r in rates.items()},
        **{f"scaling_{n}": s for n, s in scaling.items()},
    )
    # More hosts, more lookups. Not asserted: the 0.85x-linear target, which 2 shared cores
    # running the test, the broker and the CRM cannot show (README "Capacity").
    assert max(rates[2], rates[3]) > 1.2 * rates[1]


def test_the_shared_limiter_holds_across_hosts(
    hosts: Hosts, broker: EmbeddedRedis, tmp_path: Path
) -> None:
    # The CRM allows 20 requests per second; three hosts could send 120.
    with FakeCRM(
        CONTACTS, token="hosts-token", latency_s=LATENCY_S, host=hosts.gateway, rate_limit=(20, 1.0)
    ) as crm:
        cluster = Cluster(hosts, broker, tmp_path, crm, rate_limit="20/1").start(3)  # type: ignore[arg-type]
        try:
            started = time.monotonic()
            ids = cluster.send(NUMBERS[:90])
            done = wait_finished(cluster.client, ids, 120)
            elapsed = time.monotonic() - started
            served = {m.get("worker", "").split("@")[0] for m in done.values()}
        finally:
            cluster.stop()
        figure(
            "hosts_limiter",
            jobs=90,
            done=len(done),
            crm_429s=crm.rate_limited,
            crm_requests=crm.requests,
            seconds=round(elapsed, 1),
            hosts_serving=len(served),
        )
    assert len(done) == 90 and crm.rate_limited == 0
    assert len(served) == 3  # every host took part, from one budget


def test_coalescing_across_hosts(hosts: Hosts, broker: EmbeddedRedis, tmp_path: Path) -> None:
    with FakeCRM(CONTACTS, token="hosts-token", latency_s=1.0, host=hosts.gateway) as crm:
        cluster = Cluster(hosts, broker, tmp_path, crm).start(3)  # type: ignore[arg-type]
        try:
            ids = cluster.send([NUMBERS[7]] * 12, force=False)
            done = wait_finished(cluster.client, ids, 60)
            served = {m.get("worker", "").split("@")[0] for m in done.values()}
        finally:
            cluster.stop()
        figure("hosts_coalescing", lookups=12, crm_requests=crm.requests, hosts=len(served))
    assert len(done) == 12 and all(m["result"]["successful"] for m in done.values())
    assert crm.requests == 1  # one CRM request for twelve lookups on three hosts
    assert len(served) >= 2


def test_a_host_cut_off_mid_run_loses_no_job(
    hosts: Hosts, broker: EmbeddedRedis, tmp_path: Path
) -> None:
    jobs = 200
    with FakeCRM(CONTACTS, token="hosts-token", latency_s=LATENCY_S, host=hosts.gateway) as crm:
        cluster = Cluster(hosts, broker, tmp_path, crm).start(2)  # type: ignore[arg-type]
        try:
            ids = cluster.send(NUMBERS[:jobs])
            assert wait_for(lambda: len(finished(cluster.client, ids)) >= jobs // 4, 60)
            hosts.cut(1)
            cut_at = time.monotonic()
            done_at_cut = len(finished(cluster.client, ids))
            done = wait_finished(cluster.client, ids, VISIBILITY_TIMEOUT_S + 90)
            recovered_s = time.monotonic() - cut_at
        finally:
            hosts.restore(1)
            cluster.stop()
    lost = jobs - len(done)
    figure(
        "hosts_link_down",
        jobs=jobs,
        done_at_cut=done_at_cut,
        lost=lost,
        recovered_s=round(recovered_s, 1),
    )
    assert done_at_cut < jobs, "the batch finished before the cut: nothing tested"
    assert lost == 0
