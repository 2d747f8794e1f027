"""What every benchmark shares: figures, percentiles, the machine's description, a private
Redis database, CRM simulators in their own process, and real Celery worker processes.

Nothing here hard-codes a figure: a ``Figure`` holds a measured value and the baseline
measured beside it in the same run, and says whether its target is met.
"""

from __future__ import annotations

import contextlib
import importlib
import math
import multiprocessing as mp
import os
import platform
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from multiprocessing.connection import Connection as Pipe
from pathlib import Path
from typing import Any

import psutil
import redis
import requests
from celery.result import AsyncResult

from contact_lookup.core.request import LookupRequest
from contact_lookup.model.redaction import redact_url
from contact_lookup.settings import DEFAULT_REDIS_URL, Settings
from tasks.celery_app import ContactLookupCelery, create_app
from tasks.enqueue import PUBLISH_RETRY, enqueue, task_kwargs

ROOT = Path(__file__).resolve().parent.parent
PY = sys.executable
BENCH_DB = int(os.environ.get("BENCH_REDIS_DB", "9"))
RC_ACCOUNT = "809646016"
SIM_TOKEN = "bench-sim-token-7f3a"  # the simulator's credential; a benchmark-only value
NOOP = "bench.noop"  # the no-op task of bench/noop_app.py (not imported: it builds an app)
SLEEP = "bench.sleep"  # bench/noop_app.py: sleeps ``seconds``, Celery's ceiling for I/O tasks
# A pause after each sampled operation, so the next one does not start while the worker is
# still acknowledging the last (events, ack): every sample measures an isolated request.
SETTLE_S = 0.005


# ----- figures ------------------------------------------------------------------------------
@dataclass
class Figure:
    """One measured value, the baseline it is compared to, and its target.

    ``ratio`` is value / baseline. ``met`` is None for a figure that has no target of its own
    (reported for context).
    """

    name: str
    value: float
    unit: str
    baseline: float | None = None
    baseline_name: str = ""
    target: str = ""
    met: bool | None = None

    @property
    def ratio(self) -> float | None:
        if self.baseline is None or not self.baseline or math.isnan(self.value):
            return None
        return self.value / self.baseline


@dataclass
class Outcome:
    """What one benchmark reports."""

    number: int
    title: str
    figures: list[Figure] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    seconds: float = 0.0
    skipped: str | None = None  # why it did not run (a component it needs is missing)
    error: str | None = None

    @property
    def met(self) -> bool | None:
        verdicts = [f.met for f in self.figures if f.met is not None]
        if self.skipped or self.error or not verdicts:
            return None
        return all(verdicts)


def fmt(value: float | None, unit: str = "") -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    if unit == "ms":
        text = f"{value:.3f}" if value < 1 else f"{value:.2f}" if value < 100 else f"{value:.0f}"
    elif unit in ("/s", "lookups/s", "tasks/s", "requests/s"):
        text = f"{value:.0f}" if value >= 100 else f"{value:.1f}"
    elif unit == "MB":
        text = f"{value:.1f}"
    elif unit in ("%", "x"):
        text = f"{value:.2f}"
    elif float(value).is_integer():
        text = f"{int(value)}"
    else:
        text = f"{value:.3g}"
    return f"{text} {unit}".strip()


# ----- statistics ---------------------------------------------------------------------------
def percentile(values: Sequence[float], p: float) -> float:
    """The p-th percentile (0-100), linear between closest ranks; NaN for no values."""
    if not values:
        return math.nan
    s = sorted(values)
    k = (len(s) - 1) * p / 100.0
    lo = math.floor(k)
    hi = min(lo + 1, len(s) - 1)
    return s[lo] + (s[hi] - s[lo]) * (k - lo)


def ms(seconds: float) -> float:
    return seconds * 1000.0


# ----- the machine --------------------------------------------------------------------------
def cpu_model() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def machine(redis_url: str) -> dict[str, str]:
    """The description printed beside every run's figures."""
    client = redis.Redis.from_url(redis_url)
    try:
        info = client.info("server")
    finally:
        client.close()
    vm = psutil.virtual_memory()
    import celery
    import kombu

    return {
        "CPU": cpu_model(),
        "cores": f"{os.cpu_count()} logical ({psutil.cpu_count(logical=False)} physical)",
        "memory": f"{vm.total / 2**30:.1f} GiB total, {vm.available / 2**30:.1f} GiB available",
        "OS": platform.platform(),
        "Python": f"{platform.python_implementation()} {platform.python_version()}",
        "Redis": f"{info.get('redis_version')} at {redact_url(redis_url)}",
        "libraries": f"celery {celery.__version__}, kombu {kombu.__version__}, "
        f"redis-py {redis.__version__}",
        "load average at start": " ".join(f"{x:.2f}" for x in os.getloadavg()),
    }


# ----- Redis --------------------------------------------------------------------------------
def base_redis_url() -> str:
    return os.environ.get("REDIS_URL") or DEFAULT_REDIS_URL


def db_url(db: int, base: str | None = None) -> str:
    """``base`` (REDIS_URL) with its database number replaced."""
    base = base or base_redis_url()
    head, _, tail = base.rpartition("/")
    return f"{head}/{db}" if tail.isdigit() else f"{base.rstrip('/')}/{db}"


def flush(url: str) -> None:
    client = redis.Redis.from_url(url)
    try:
        client.flushdb()
    finally:
        client.close()


# ----- phone numbers and seed contacts -------------------------------------------------------
def numbers(start: int, count: int) -> list[str]:
    """Distinct valid US numbers: ``+1415`` followed by 7 digits from ``2000000 + start``."""
    return [f"+1415{2_000_000 + start + i:07d}" for i in range(count)]


def seed_for(nums: Iterable[str], every: int = 25) -> list[dict[str, Any]]:
    """Seed contacts for every ``every``-th number, so some lookups match and are cached."""
    out = []
    for i, number in enumerate(nums):
        if i % every == 0:
            out.append(
                {
                    "id": f"b-{number[1:]}",
                    "name": f"Bench Contact {i}",
                    "phone": number,
                    "type": "Contact",
                    "createdDate": "2021-03-04T10:00:00Z",
                }
            )
    return out


# ----- CRM simulator in its own process -----------------------------------------------------
def _sim_main(
    pipe: Pipe,
    crm: str,
    contacts: list[dict[str, Any]],
    latency_s: float,
    rate_limit: tuple[int, float] | None,
) -> None:
    cls = importlib.import_module(f"crmsim.{crm}").SIMULATOR
    sim = cls(contacts, token=SIM_TOKEN, latency_s=latency_s, rate_limit=rate_limit)
    sim.set_rate_limit(rate_limit)  # None means none, not the vendor's default
    sim.start()
    pipe.send({"url": sim.url, "token_env": sim.token_env, "name": sim.name})
    while True:
        try:
            cmd, arg = pipe.recv()
        except EOFError:
            break
        if cmd == "stop":
            break
        if cmd == "counters":
            with sim.lock:
                pipe.send(
                    {
                        "requests": sim.requests,
                        "rate_limited": sim.rate_limited,
                        "max_in_flight": sim.max_in_flight,
                        "queries": Counter(sim.queries),
                    }
                )
        elif cmd == "reset":
            sim.reset_counters()
            pipe.send(True)
        elif cmd == "rate_limit":
            sim.set_rate_limit(arg)
            pipe.send(True)
        elif cmd == "latency":
            sim.latency_s = arg
            pipe.send(True)
    sim.stop()


class SimProcess:
    """A ``crmsim`` vendor simulator (real HTTP/1.1 keep-alive, TCP_NODELAY) in a child process,
    so its request handling does not share a GIL with the benchmark driver."""

    def __init__(
        self,
        crm: str = "clio",
        contacts: list[dict[str, Any]] | None = None,
        *,
        latency_s: float = 0.0,
        rate_limit: tuple[int, float] | None = None,
    ) -> None:
        self.crm = crm
        ctx = mp.get_context("spawn")
        self._pipe, child = ctx.Pipe()
        self._proc = ctx.Process(
            target=_sim_main,
            args=(child, crm, contacts or [], latency_s, rate_limit),
            name=f"bench-sim-{crm}",
            daemon=True,
        )
        self._proc.start()
        if not self._pipe.poll(30):
            self._proc.kill()
            raise RuntimeError(f"the {crm} simulator did not start")
        info = self._pipe.recv()
        self.url: str = info["url"]
        self.token_env: str = info["token_env"]

    @property
    def pid(self) -> int:
        return int(self._proc.pid or 0)

    def _call(self, cmd: str, arg: Any = None) -> Any:
        self._pipe.send((cmd, arg))
        if not self._pipe.poll(30):
            raise RuntimeError(f"the simulator did not answer {cmd!r}")
        return self._pipe.recv()

    def counters(self) -> dict[str, Any]:
        result: dict[str, Any] = self._call("counters")
        return result

    def reset(self) -> None:
        self._call("reset")

    def set_rate_limit(self, rate_limit: tuple[int, float] | None) -> None:
        self._call("rate_limit", rate_limit)

    def set_latency(self, latency_s: float) -> None:
        self._call("latency", latency_s)

    def env(self) -> dict[str, str]:
        return {self.token_env: SIM_TOKEN}

    def stop(self) -> None:
        with contextlib.suppress(OSError, BrokenPipeError):
            self._pipe.send(("stop", None))
        self._proc.join(10)
        if self._proc.is_alive():
            self._proc.kill()
            self._proc.join(5)

    def __enter__(self) -> SimProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def connection_toml(
    name: str,
    sim: SimProcess,
    *,
    formats: str = "",
    rate_limit: str | None = "1000000/1",
    extra: Mapping[str, Any] | None = None,
) -> str:
    """One ``[connections.NAME]`` table pointed at ``sim``.

    ``rate_limit`` defaults to far above any load the benchmarks make: the shared limiter
    runs on every lookup, as it does in production, without ever deferring one.
    """
    lines = [
        f"[connections.{name}]",
        f'crm = "{sim.crm}"',
        f'base_url = "{sim.url}"',
        f'token_env = "{sim.token_env}"',
        f'rc_account = "{RC_ACCOUNT}"',
        f'formats = "{formats}"',
        'region = "US"',
    ]
    if rate_limit:
        lines.append(f'rate_limit = "{rate_limit}"')
    for key, value in (extra or {}).items():
        if isinstance(value, bool):
            lines.append(f"{key} = {str(value).lower()}")
        elif isinstance(value, int):
            lines.append(f"{key} = {value}")
        else:
            lines.append(f'{key} = "{value}"')
    return "\n".join(lines) + "\n"


# ----- one benchmark run's context -----------------------------------------------------------
class Context:
    """A temporary directory, the benchmark Redis database and the environment workers get."""

    def __init__(self, redis_url: str) -> None:
        self.redis_url = redis_url
        self.tmp = Path(tempfile.mkdtemp(prefix="contact-lookup-bench-"))
        self.memo: dict[str, Any] = {}
        self._config_n = 0

    def redis(self) -> redis.Redis:
        return redis.Redis.from_url(self.redis_url)

    def flush(self) -> None:
        flush(self.redis_url)

    def write_config(self, *tables: str, default: str | None = None) -> Path:
        self._config_n += 1
        path = self.tmp / f"bench-{self._config_n}.toml"
        text = "".join(tables)
        if default:
            text += f'\n[extensions]\ndefault = "{default}"\n'
        path.write_text(text, encoding="utf-8")
        return path

    def env(self, config: Path, extra: Mapping[str, str] | None = None) -> dict[str, str]:
        env = {
            k: v
            for k, v in os.environ.items()
            if k
            not in (
                "BROKER_URL",
                "RESULT_BACKEND",
                "CACHE_URL",
                "STATE_URL",
                "CONTACT_LOOKUP_CONFIG",
            )
        }
        env.update(
            REDIS_URL=self.redis_url,
            CONTACT_LOOKUP_CONFIG=str(config),
            LOG_FORMAT="text",
            PYTHONPATH=str(ROOT) + os.pathsep + env.get("PYTHONPATH", ""),
        )
        env.update(extra or {})
        return env

    def app(self, env: Mapping[str, str]) -> ContactLookupCelery:
        """A producer-side Celery app with the settings the workers get."""
        return create_app(Settings.from_env(env))

    def cleanup(self) -> None:
        import shutil

        shutil.rmtree(self.tmp, ignore_errors=True)


# ----- real Celery worker processes ---------------------------------------------------------
class Worker:
    """``python -m celery -A bench.noop_app worker --pool threads -c C -Q QUEUES``.

    ``bench.noop_app`` is the product's app (``worker``) with a no-op task added, so the worker
    that runs lookups and the baseline worker are the same program with the same settings.
    """

    def __init__(
        self,
        ctx: Context,
        env: Mapping[str, str],
        *,
        queues: Sequence[str],
        concurrency: int,
        name: str = "bench",
        app: str = "bench.noop_app",
        pool: str = "threads",
    ) -> None:
        self.ctx = ctx
        self.env = dict(env)
        self.queues = list(queues)
        self.concurrency = concurrency
        self.name = f"{name}@bench"
        self.app = app
        self.pool = pool
        self.log_path = ctx.tmp / f"worker-{name}-{time.monotonic_ns()}.log"
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def command(self) -> list[str]:
        return [
            PY,
            "-m",
            "celery",
            "-A",
            self.app,
            "worker",
            "--pool",
            self.pool,
            "-c",
            str(self.concurrency),
            "-Q",
            ",".join(self.queues),
            "-n",
            self.name,
            "-l",
            "WARNING",
        ]

    def start(self, client_app: ContactLookupCelery, timeout_s: float = 45.0) -> Worker:
        log = self.log_path.open("wb")
        self.proc = subprocess.Popen(
            self.command, env=self.env, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT
        )
        log.close()
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"worker {self.name} exited at start:\n{self.tail()}")
            replies = client_app.control.ping(destination=[self.name], timeout=0.5, limit=1)
            if replies:
                return self
        self.stop()
        raise RuntimeError(f"worker {self.name} did not answer a ping in {timeout_s:g} s")

    def tail(self, lines: int = 30) -> str:
        with contextlib.suppress(OSError):
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        return ""

    @property
    def process(self) -> psutil.Process:
        assert self.proc is not None
        return psutil.Process(self.proc.pid)

    def rss_mb(self) -> float:
        """Resident memory of the worker process (threads pool: one process does all)."""
        return self.process.memory_info().rss / 2**20

    def cpu_s(self) -> float:
        t = self.process.cpu_times()
        return float(t.user + t.system)

    def stop(self, timeout_s: float = 20.0) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)  # warm shutdown: finishes running tasks
        try:
            self.proc.wait(timeout_s)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)


@contextlib.contextmanager
def running(worker: Worker, client_app: ContactLookupCelery) -> Iterator[Worker]:
    worker.start(client_app)
    try:
        yield worker
    finally:
        worker.stop()


def clio_search(session: requests.Session, sim: SimProcess, number: str) -> None:
    """The lookup's one Clio search, sent straight from this process on a keep-alive
    ``session``: what the CRM request costs without the product around it."""
    session.get(
        f"{sim.url}/api/v4/contacts.json",
        params={"query": number, "fields": "id,name"},
        headers={"Authorization": f"Bearer {SIM_TOKEN}"},
        timeout=15,
    ).raise_for_status()


# ----- task results straight from the result backend ---------------------------------------
TERMINAL = ("SUCCESS", "FAILURE", "REVOKED")


def metas(app: ContactLookupCelery, task_ids: Sequence[str]) -> list[dict[str, Any] | None]:
    """The stored result metadata of each task (None where nothing is stored yet)."""
    backend = app.backend
    client = backend.client
    out: list[dict[str, Any] | None] = []
    for i in range(0, len(task_ids), 1000):
        chunk = task_ids[i : i + 1000]
        raw = client.mget([backend.get_key_for_task(t) for t in chunk])
        out.extend(backend.decode_result(r) if r is not None else None for r in raw)
    return out


def wait_all_done(
    app: ContactLookupCelery,
    task_ids: Sequence[str],
    timeout_s: float,
    on_tick: Callable[[], None] | None = None,
) -> list[dict[str, Any]]:
    """Block until every task's result is stored in a final state; their metas in order.

    Polls the last-sent tasks (queues are FIFO, so they finish last), then checks them all.
    """
    deadline = time.monotonic() + timeout_s
    tail = list(task_ids[-32:])
    while True:
        if on_tick:
            on_tick()
        last = metas(app, tail)
        if all(m is not None and m.get("status") in TERMINAL for m in last):
            every = metas(app, task_ids)
            pending = [t for t, m in zip(task_ids, every, strict=True) if not _final(m)]
            if not pending:
                return [m for m in every if m is not None]
            tail = pending[-32:]
        if time.monotonic() > deadline:
            done = sum(1 for m in metas(app, task_ids) if _final(m))
            raise TimeoutError(f"{done} of {len(task_ids)} tasks done after {timeout_s:g} s")
        time.sleep(0.1)


def _final(meta: dict[str, Any] | None) -> bool:
    return meta is not None and meta.get("status") in TERMINAL


def done_times(task_metas: Iterable[dict[str, Any]]) -> list[float]:
    """Epoch seconds at which each task finished (the backend's ``date_done``), sorted."""
    from datetime import datetime

    out = []
    for m in task_metas:
        done = m.get("date_done")
        if isinstance(done, str):
            out.append(datetime.fromisoformat(done).timestamp())
        elif done is not None:
            out.append(done.timestamp())
    return sorted(out)


def steady_rate(times: Sequence[float], skip: int) -> float:
    """Completions per second after the first ``skip`` (the first wave of a pool of ``skip``
    threads finishes together), so a start-up ramp and wave edges do not bias the rate."""
    if len(times) <= skip + 1:
        return math.nan
    skip = max(1, skip)
    span = times[-1] - times[skip - 1]
    return (len(times) - skip) / span if span > 0 else math.nan


# ----- sending jobs --------------------------------------------------------------------------
def send_noop(app: ContactLookupCelery, connection: str, query: LookupRequest) -> AsyncResult:
    """The no-op task, sent exactly as ``tasks.enqueue.enqueue`` sends ``find_contact``: the
    same kwargs, queue, expiry and publish retry policy."""
    expires = app.settings.call_pop_deadline_s if query.purpose == "call_pop" else None
    return app.send_task(
        NOOP,
        kwargs=task_kwargs(connection, query),
        queue=query.purpose,
        routing_key=query.purpose,
        expires=expires,
        retry=True,
        retry_policy=PUBLISH_RETRY,
    )


def send_sleep(
    app: ContactLookupCelery, connection: str, query: LookupRequest, seconds: float
) -> str:
    """The sleeping baseline task on the relookup queue; returns its task id."""
    return str(
        app.send_task(
            SLEEP,
            kwargs={**task_kwargs(connection, query), "seconds": seconds},
            queue=query.purpose,
            routing_key=query.purpose,
        ).id
    )


def send_lookup(app: ContactLookupCelery, connection: str, query: LookupRequest) -> AsyncResult:
    return enqueue(app, connection, query)


def round_trip(
    send: Callable[[ContactLookupCelery, str, LookupRequest], AsyncResult],
    app: ContactLookupCelery,
    connection: str,
    query: LookupRequest,
    timeout_s: float = 15.0,
) -> tuple[float, dict[str, Any]]:
    """Seconds from send to the result in hand (send + worker + result get), and the result."""
    started = time.perf_counter()
    result: dict[str, Any] = send(app, connection, query).get(timeout=timeout_s)
    seconds = time.perf_counter() - started
    time.sleep(SETTLE_S)
    return seconds, result


# ----- where the time goes -------------------------------------------------------------------
# (file path fragment, function name) of the library entry points whose cost a profile reports.
REDIS_CALLS = ("redis/client.py", "execute_command")
HTTP_CALLS = ("requests/sessions.py", "request")
PHONE_PARSING = ("phonenumbers/phonenumberutil.py", "parse")


def profile(
    work: Callable[[], object], groups: Mapping[str, tuple[str, str]], runs: int
) -> dict[str, tuple[float, float]]:
    """Runs ``work`` ``runs`` times under cProfile: {group: (ms per run, calls per run)}, plus
    ``"total"``. Profiling inflates every figure alike; read the shares, not the totals."""
    import cProfile
    import pstats

    prof = cProfile.Profile()
    prof.enable()
    for _ in range(runs):
        work()
    prof.disable()
    stats: Any = pstats.Stats(prof)
    out: dict[str, tuple[float, float]] = {"total": (ms(stats.total_tt) / runs, 1.0)}
    for label, (path, func) in groups.items():
        cum = calls = 0.0
        for (filename, _line, name), (_cc, nc, _tt, ct, _callers) in stats.stats.items():
            if name == func and filename.replace("\\", "/").endswith(path):
                cum += ct
                calls += nc
        out[label] = (ms(cum) / runs, calls / runs)
    return out


def shares(prof: Mapping[str, tuple[float, float]]) -> str:
    """'62% in Redis calls (3.0 per run), ...' from ``profile``'s answer."""
    total = prof["total"][0] or math.nan
    parts = [
        f"{100 * cost / total:.0f}% in {label} ({calls:.1f} per run)"
        for label, (cost, calls) in prof.items()
        if label != "total"
    ]
    return ", ".join(parts)


@contextlib.contextmanager
def environ(values: Mapping[str, str]) -> Iterator[None]:
    """Set environment variables for the block (connectors read their token from it)."""
    saved = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def redis_process(url: str) -> psutil.Process | None:
    """The local redis-server listening on ``url``'s port, when there is one (for its CPU)."""
    from urllib.parse import urlsplit

    port = urlsplit(url).port or 6379
    for p in psutil.process_iter(["name"]):
        if not (p.info.get("name") or "").startswith("redis-server"):
            continue
        with contextlib.suppress(psutil.Error):
            for c in p.net_connections(kind="tcp"):
                if c.status == psutil.CONN_LISTEN and c.laddr and c.laddr.port == port:
                    return p
    return None


class CpuMeter:
    """CPU seconds used by named processes over a span, sampled with ``sample()`` (a process
    that exits keeps its last sample)."""

    def __init__(self, procs: Mapping[str, psutil.Process | None]) -> None:
        self.t0 = time.monotonic()
        self.procs = {k: p for k, p in procs.items() if p is not None}
        self.first = {k: self._cpu(p) for k, p in self.procs.items()}
        self.last = dict(self.first)
        self.t_last = self.t0

    @staticmethod
    def _cpu(p: psutil.Process) -> float | None:
        try:
            t = p.cpu_times()
        except psutil.Error:
            return None
        return float(t.user + t.system)

    def sample(self) -> None:
        self.t_last = time.monotonic()
        for k, p in self.procs.items():
            cpu = self._cpu(p)
            if cpu is not None:
                self.last[k] = cpu

    def shares(self) -> str:
        """'logging worker 82%, ...' of one core over the span."""
        wall = max(1e-9, self.t_last - self.t0)
        parts = []
        for k in self.procs:
            a, b = self.first.get(k), self.last.get(k)
            if a is not None and b is not None:
                parts.append(f"{k} {100 * (b - a) / wall:.0f}%")
        return ", ".join(parts)


# ----- what else ran on the machine ----------------------------------------------------------
class MachineLoad:
    """CPU used on the machine during a span, and how much of it by processes outside this
    benchmark run (other users' jobs distort every figure on a 2-core machine).

    Processes that started and ended inside the span are missed, so "others" is a floor.
    """

    def __init__(self) -> None:
        self.t0 = time.monotonic()
        self.cpu0 = psutil.cpu_times()
        self.procs0 = self._others()

    @staticmethod
    def _others() -> dict[tuple[int, float], float]:
        me = psutil.Process()
        ours = {me.pid, *(p.pid for p in me.children(recursive=True))}
        out = {}
        for p in psutil.process_iter(["pid", "name", "create_time", "cpu_times"]):
            info = p.info
            if info["pid"] in ours or not info.get("cpu_times"):
                continue
            if (info.get("name") or "").startswith("redis-server"):
                continue  # the Redis this run uses; shared, so neither ours nor theirs
            t = info["cpu_times"]
            out[(info["pid"], info["create_time"])] = float(t.user + t.system)
        return out

    def summary(self) -> str:
        wall = time.monotonic() - self.t0
        cpu1 = psutil.cpu_times()
        busy = sum(getattr(cpu1, f) - getattr(self.cpu0, f) for f in ("user", "system", "nice"))
        procs1 = self._others()
        others = sum(v - self.procs0.get(k, 0.0) for k, v in procs1.items())
        cores = os.cpu_count() or 1
        return (
            f"machine CPU busy {100 * busy / (wall * cores):.0f}% of {cores} cores over "
            f"{wall:.0f} s; processes outside this run (Redis excluded) used at least "
            f"{100 * others / wall:.0f}% of one core"
        )
