"""CRM faults through the simulators, on a real in-process worker: every fault ends in retries
and success once it clears, or in a clear failed result; the worker stays up; a failure never
writes, changes or deletes a cache entry.

Every connector present (FakeCRM and each ``crmsim`` vendor whose connector exists) gets every
case, each case on its own simulator and connection. All cases of all CRMs run at once in one
module-scoped run (retries wait 0.5-1 s each, so sequential runs would take minutes); the
per-CRM tests then check that run's outcomes.
"""

from __future__ import annotations

import json
import random
import socket
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import redis
from celery.contrib.testing.worker import start_worker
from celery.result import AsyncResult

from contact_lookup.connectors.registry import ConnectorFactory
from contact_lookup.core.request import LookupRequest
from contact_lookup.model.config import parse_config
from contact_lookup.model.errors import CRMUnavailable
from contact_lookup.settings import Settings
from crmsim.base import Simulator
from localredis import free_port
from tasks.celery_app import ContactLookupCelery, create_app
from tasks.enqueue import enqueue
from tasks.runtime import runtime_for
from tests.conftest import AMQP_BROKER_URL, db_url, require_redis
from tests.faults.faultkit import (
    CONTACTS,
    FAULTS_DB,
    FIGURES,
    available_crms,
    figure,
    quick_drip,
    simulator_class,
    write_connections,
)

pytestmark = pytest.mark.faults

TOKEN = "faults-crm-token-3c9e"
NUMBER, NAMES = "+14155550123", ["Grace Hopper"]  # stored as E.164 in every simulator
LATER, LATER_NAMES = "+14155550177", ["Alan Turing", "Barbara Liskov"]
HTTP_TIMEOUT_S = 0.5
HANG_S = 2.0  # a "timeout" fault holds the request this long: past the client's timeout
DEADLINE_S = 5.0  # call pops: a persistent fault must end in a failed result before this
# A 429 storm: distinct numbers, so neither the cache nor coalescing spares a request.
STORM = [
    (NUMBER, NAMES),
    ("+14155550188", ["Edsger Dijkstra"]),
    ("+14155550144", ["Katherine Johnson"]),
    ("+442079460958", ["Margaret Hamilton"]),
]
STORM_JOBS = len(STORM)
STORM_429S: dict[str, int] = {}  # per CRM: how many 429s the storm drew (figure)

# (case, fault, how many requests in a row get it): retries, then success.
TRANSIENT = [
    ("http500x2", "500", 2),
    ("http502", "502", 1),
    ("http503", "503", 1),
    ("timeout", "timeout", 1),
    ("malformed", "malformed", 1),
    ("truncated", "truncated", 1),
    ("empty", "empty", 1),
    ("huge", "huge", 1),
    ("slowdrip", "slow-drip", 1),
    ("reset", "reset", 1),
]
TRANSIENT_FAULTS = {case: (fault, count) for case, fault, count in TRANSIENT}
# Cases with their own script: a 429 storm, a refused connection that clears, persistent
# faults on a call pop (failed result before the deadline), rejected credentials.
SCRIPTED = ["storm", "refused", "down503", "downrefused", "auth"]
CASES = [c for c, _, _ in TRANSIENT] + SCRIPTED


CRMS = available_crms()


@dataclass
class Case:
    crm: str
    name: str
    connection: str
    sim: Simulator | None
    port: int
    table: dict[str, Any]
    pending: list[AsyncResult] = field(default_factory=list)
    results: list[dict[str, Any]] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    elapsed_s: float = 0.0
    cache_before: bytes | None = None
    cache_after: bytes | None = None
    later: dict[str, Any] | None = None


@dataclass
class Run:
    cases: dict[tuple[str, str], Case]
    cache_keys: dict[tuple[str, str], str]


def unclaimed_port() -> int:
    """A free port below the kernel's ephemeral range: no client socket can take it as its
    local port before the simulator comes up there. (A port from ``free_port`` is in that
    range, and with lookups' searches sent concurrently, the suite's own client connections,
    or another process's, sometimes took it first: "Address already in use".)"""
    try:
        low = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return free_port()
    for port in random.sample(range(20000, max(20001, low)), min(200, max(1, low - 20000))):
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
        return port
    return free_port()


def start_sim(crm: str, port: int = 0) -> Simulator:
    sim = simulator_class(crm)(CONTACTS, token=TOKEN, hang_s=HANG_S, port=port)
    return quick_drip(sim).start()


def build_cases(tmp_path: Path) -> dict[tuple[str, str], Case]:
    cases: dict[tuple[str, str], Case] = {}
    for crm in CRMS:
        for name in CASES:
            sim = None if name in ("refused", "downrefused") else start_sim(crm)
            port = sim.port if sim else unclaimed_port()  # nothing listens there (yet)
            table = dict(sim.connection()) if sim else table_for_port(crm, port)
            table["rc_account"] = "faults"
            cases[crm, name] = Case(crm, name, f"{crm}_{name}", sim, port, table)
    write_connections(tmp_path / "cl.toml", {c.connection: c.table for c in cases.values()})
    return cases


def table_for_port(crm: str, port: int) -> dict[str, Any]:
    """The connection table of a simulator that would listen on ``port``."""
    probe = simulator_class(crm)(CONTACTS, token=TOKEN)
    try:
        table = dict(probe.connection())
    finally:
        probe._server.server_close()
    table["base_url"] = f"http://127.0.0.1:{port}"
    return table


def execute(app: ContactLookupCelery, cases: dict[tuple[str, str], Case]) -> Run:
    service = runtime_for(app).service
    cache = service.cache.redis
    keys = {
        k: service.prepare(c.connection, LookupRequest(NUMBER, purpose="call_log")).cache_key
        for k, c in cases.items()
    }

    def look(case: Case, purpose: str = "call_log", number: str = NUMBER, **kw: Any) -> Any:
        return enqueue(app, case.connection, LookupRequest(number, purpose=purpose, **kw))

    # Seed: the cases whose failure must leave an existing entry alone get one first.
    seeded = [c for c in cases.values() if c.name in ("down503", "auth")]
    for case in seeded:
        result = look(case).get(timeout=20)
        if not result["successful"]:
            case.errors.append(f"seeding failed: {result}")
        case.cache_before = cache.get(keys[case.crm, case.name])
    # The CRM revokes our token (and, where it has them, the sessions it opened).
    for case in seeded:
        if case.name == "auth" and case.sim is not None:
            case.sim.token = "rotated-on-the-crm-side"
            expire = getattr(case.sim, "expire_sessions", None)
            if expire is not None:
                expire()

    # Faults, all at once.
    started = time.monotonic()
    for case in cases.values():
        sim = case.sim
        if case.name in TRANSIENT_FAULTS:
            fault, count = TRANSIENT_FAULTS[case.name]
            assert sim is not None
            sim.inject(fault, count)
            case.pending.append(look(case))
        elif case.name == "storm":
            assert sim is not None
            sim.set_rate_limit((1, 1.0))
            case.pending += [look(case, number=number) for number, _ in STORM]
        elif case.name == "refused":
            case.pending.append(look(case))
        elif case.name == "down503":
            assert sim is not None
            sim.inject("503", 1000)
            case.pending.append(look(case, "call_pop", force_refresh=True))
        elif case.name == "downrefused":
            case.pending.append(look(case, "call_pop"))
        elif case.name == "auth":
            case.pending.append(look(case, "call_pop", force_refresh=True))

    # Then wait for every result, clearing the faults that clear on the way: a CRM coming
    # up on the refused port once the job is retrying, a storm's limit lifting once it has
    # rate limited the jobs.
    waiting = {(k, i): p for k, c in cases.items() for i, p in enumerate(c.pending)}
    outcomes: dict[tuple[tuple[str, str], int], Any] = {}
    to_clear = {k for k, c in cases.items() if c.name in ("refused", "storm")}
    deadline = time.monotonic() + 40
    while (waiting or to_clear) and time.monotonic() < deadline:
        for key in list(to_clear):
            case = cases[key]
            if case.name == "refused" and case.pending[0].state == "RETRY":
                case.sim = start_sim(case.crm, case.port)
                to_clear.discard(key)
            elif case.name == "storm":
                # The CRM's 429s, or the shared limiter holding jobs back, made them wait.
                assert case.sim is not None
                done = all(p.ready() for p in case.pending)
                held = sum(p.state == "RETRY" for p in case.pending)
                if done or max(case.sim.rate_limited, held) >= STORM_JOBS - 1:
                    case.sim.set_rate_limit(type(case.sim).default_rate_limit)
                    to_clear.discard(key)
        for slot, pending in list(waiting.items()):
            if pending.ready():
                del waiting[slot]
                try:
                    outcomes[slot] = pending.get(timeout=1)
                except Exception as exc:  # reported per case by the tests
                    outcomes[slot] = exc
                case = cases[slot[0]]
                case.elapsed_s = max(case.elapsed_s, time.monotonic() - started)
        time.sleep(0.05)
    for key in to_clear:
        cases[key].errors.append(f"the fault never took effect: {cases[key].sim!r}")
    for key, case in cases.items():
        for i in range(len(case.pending)):
            outcome = outcomes.get((key, i), "no result within 40 s")
            if isinstance(outcome, dict):
                case.results.append(outcome)
            else:
                case.errors.append(f"job {i}: {outcome!r}")
        case.cache_after = cache.get(keys[key])

    # Later: every fault cleared, the same worker answers every connection.
    for case in cases.values():
        if case.name == "auth":
            continue
        if case.sim is None:
            case.sim = start_sim(case.crm, case.port)
        case.sim.faults.clear()
        case.pending = [look(case, number=LATER)]
    for case in cases.values():
        if case.name != "auth":
            try:
                case.later = case.pending[0].get(timeout=20)
            except Exception as exc:
                case.errors.append(f"later lookup: {type(exc).__name__}: {exc}")
    return Run(cases, keys)


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Run]:
    url = db_url(FAULTS_DB)
    require_redis(url)
    client = redis.Redis.from_url(url)
    client.flushdb()
    tmp_path = tmp_path_factory.mktemp("crm-faults")
    cases = build_cases(tmp_path)
    settings = Settings(
        redis_url=url,
        broker_url=AMQP_BROKER_URL or url,  # the run's broker: RabbitMQ under make test-amqp
        result_backend=url,
        cache_url=url,
        state_url=url,
        config_path=str(tmp_path / "cl.toml"),
        http_timeout_s=HTTP_TIMEOUT_S,
        call_pop_deadline_s=DEADLINE_S,
    )
    env = {simulator_class(crm)(token=TOKEN).token_env: TOKEN for crm in CRMS}
    with pytest.MonkeyPatch.context() as mp:
        for name, value in env.items():
            mp.setenv(name, value)
        app = create_app(settings)
        try:
            with start_worker(
                app,
                pool="threads",
                concurrency=64,
                perform_ping_check=False,
                queues=["call_log", "call_pop"],
                shutdown_timeout=10,
            ):
                yield execute(app, cases)
        finally:
            app.close()
            for case in cases.values():
                if case.sim is not None:
                    case.sim.stop()
            client.flushdb()
            client.close()


def check(case: Case, ok: bool, message: str) -> None:
    if not ok:
        case.errors.append(message[:300])


def real_names(result: dict[str, Any]) -> list[str]:
    return [c["name"] for c in result["matchedContactInfo"] if not c.get("isNewContact")]


def cached_names(raw: bytes | None) -> list[str] | None:
    return None if raw is None else [c["name"] for c in json.loads(raw)]


def judge(case: Case) -> None:
    """Every expectation of one case; failures are collected, not raised, for one report."""
    if case.errors:
        return
    if case.name in ("down503", "downrefused", "auth"):
        (result,) = case.results
        tracking = result["extraDataTracking"]
        check(case, result["successful"] is False, f"expected a failed result: {result}")
        check(case, result["matchedContactInfo"] == [], "a failure carries no contacts")
        message = (result.get("returnMessage") or {}).get("message", "")
        check(case, bool(message), "a failure says what happened")
        if case.name == "auth":
            check(case, tracking.get("errorType") == "AuthRejected", f"{tracking}")
            check(case, "retryCount" not in tracking, f"credentials retried: {tracking}")
        else:
            check(case, tracking.get("errorType") == "CRMUnavailable", f"{tracking}")
            check(case, "stopped ringing" in message, f"not ended by the deadline: {message}")
            check(case, case.elapsed_s < DEADLINE_S + 5, f"took {case.elapsed_s:.1f} s")
        if case.name == "down503":
            check(case, tracking.get("statusCode") == 503, f"{tracking}")
        if case.name == "downrefused":
            check(case, case.cache_after is None, "a failure wrote a cache entry")
        else:
            check(case, case.cache_before is not None, "the seed lookup cached nothing")
            check(case, case.cache_after == case.cache_before, "a failure changed the cache")
    else:
        expected = [names for _, names in STORM] if case.name == "storm" else [NAMES]
        for result, names in zip(case.results, expected, strict=True):
            tracking = result["extraDataTracking"]
            check(case, result["successful"] is True, f"expected success: {result}")
            check(case, real_names(result) == names, f"wrong contacts: {real_names(result)}")
            if case.name != "storm":
                check(case, tracking.get("retryCount", 0) >= 1, f"never retried: {tracking}")
        if case.name == "storm":
            retried = sum(r["extraDataTracking"].get("retryCount", 0) for r in case.results)
            check(case, retried >= STORM_JOBS - 1, f"only {retried} retries in the storm")
            crm_said = case.sim.rate_limited if case.sim else 0
            STORM_429S[case.crm] = crm_said
        check(case, cached_names(case.cache_after) == NAMES, "cache entry is not the match")
    if case.name != "auth":
        later = case.later or {}
        check(case, later.get("successful") is True, f"later lookup failed: {later}")
        check(case, sorted(real_names(later)) == LATER_NAMES, f"later: {real_names(later)}")


@pytest.mark.parametrize("crm", CRMS)
def test_every_crm_fault_ends_in_success_or_a_clear_failure(run: Run, crm: str) -> None:
    failures = {}
    for name in CASES:
        case = run.cases[crm, name]
        judge(case)
        if case.errors:
            failures[name] = case.errors
    survived = len(CASES) - len(failures)
    totals = FIGURES.setdefault("crm_faults", {"crms": 0, "cases": 0, "survived": 0})
    totals.update(
        crms=totals["crms"] + 1,
        cases=totals["cases"] + len(CASES),
        survived=totals["survived"] + survived,
        storm_429s=sum(STORM_429S.values()),
    )
    figure("crm_faults", **totals)
    assert not failures, f"{crm}: {len(failures)} of {len(CASES)} cases failed: {failures}"


# ----- the timeout bounds the whole response, not each read -----------------------------------
def test_a_slow_drip_body_is_cut_off_near_the_timeout(tmp_path: Path) -> None:
    with start_sim("fakecrm") as sim:
        table = {**sim.connection(), "rc_account": "faults"}
        config = parse_config({"connections": {"drip": table}}, tmp_path)
        factory = ConnectorFactory(timeout_s=HTTP_TIMEOUT_S, env={sim.token_env: TOKEN})
        sim.inject("slow-drip")
        started = time.monotonic()
        with pytest.raises(CRMUnavailable):
            factory.build(config.connection("drip")).find([NUMBER])
        elapsed = time.monotonic() - started
    assert elapsed < HTTP_TIMEOUT_S + 0.5, f"gave up after {elapsed:.1f} s"
