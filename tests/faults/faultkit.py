"""Shared helpers of the fault suite: worker subprocesses, result polling, Redis scans, and the
figures each test reports (printed by conftest.py's terminal summary)."""

from __future__ import annotations

import contextlib
import importlib
import importlib.util
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

import redis

from crmsim import VENDORS
from crmsim.base import Simulator
from tests.conftest import ROOT
from tests.fakecrm import FakeCRM, wait_for

FAULTS_DB = 10
FIGURES: dict[str, dict[str, Any]] = {}
META_PREFIX = "celery-task-meta-"  # Celery's Redis result backend key for a task id


def figure(name: str, **values: Any) -> None:
    """Record one figure for the README (shown in pytest's terminal summary)."""
    FIGURES[name] = values
    print(f"FAULTS {name}: " + ", ".join(f"{k}={v}" for k, v in values.items()))


# ----- worker subprocesses ---------------------------------------------------------------------
def base_env(**overrides: str) -> dict[str, str]:
    """The environment for a subprocess: ours, without anything that would redirect it."""
    drop = (
        "REDIS_URL",
        "BROKER_URL",
        "RESULT_BACKEND",
        "CACHE_URL",
        "STATE_URL",
        "CONTACT_LOOKUP_CONFIG",
    )
    env = {k: v for k, v in os.environ.items() if k not in drop and not k.startswith("CRMSIM_")}
    env["PYTHONUNBUFFERED"] = "1"
    env.update(overrides)
    return env


class Proc:
    """A subprocess in its own session (so a kill reaches its whole group), its stdout and
    stderr in files under ``log_dir``."""

    def __init__(self, args: list[str], env: Mapping[str, str], log_dir: Path, name: str) -> None:
        self.args = args
        self.env = dict(env)
        self.name = name
        self.out_path = log_dir / f"{name}.stdout"
        self.err_path = log_dir / f"{name}.stderr"
        self.proc: subprocess.Popen[bytes] | None = None

    def launch(self) -> Proc:
        with open(self.out_path, "ab") as out, open(self.err_path, "ab") as err:
            self.proc = subprocess.Popen(
                self.args, cwd=ROOT, env=self.env, stdout=out, stderr=err, start_new_session=True
            )
        return self

    def wait_until(self, ready: Callable[[], bool], timeout_s: float = 30.0) -> Proc:
        if not wait_for(lambda: not self.alive or ready(), timeout_s) or not self.alive:
            self.stop()
            raise AssertionError(f"{self.name} did not start:\n{self.logs()[-3000:]}")
        return self

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def logs(self) -> str:
        text = ""
        for path in (self.out_path, self.err_path):
            if path.exists():
                text += path.read_text(encoding="utf-8", errors="replace")
        return text

    def log_lines(self) -> list[str]:
        return self.logs().splitlines()

    def kill(self) -> None:
        """SIGKILL to the whole process group: no shutdown, no acks, no goodbyes."""
        assert self.proc is not None
        os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(10)

    def stop(self, timeout_s: float = 15.0) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGTERM)
                self.proc.wait(timeout_s)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(10)
            except ProcessLookupError:
                pass
        # Children the process started may outlive it in its group; leave nothing behind.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.proc.pid, signal.SIGKILL)

    def __exit__(self, *exc: object) -> None:
        self.stop()


class WorkerProcess(Proc):
    """``celery -A worker worker --pool threads``, ready when it logs ``<name> ready.``"""

    def __init__(
        self,
        env: Mapping[str, str],
        log_dir: Path,
        name: str,
        *,
        queues: str = "call_log",
        concurrency: int = 8,
        extra: Iterable[str] = (),
    ) -> None:
        args = [
            sys.executable,
            "-m",
            "celery",
            "-A",
            "worker",
            "worker",
            "--pool",
            "threads",
            "-c",
            str(concurrency),
            "-Q",
            queues,
            "-n",
            f"{name}@%h",
            "--loglevel",
            "INFO",
            "--without-mingle",
            *extra,
        ]
        super().__init__(args, env, log_dir, name)

    def wait_ready(self, timeout_s: float = 30.0) -> WorkerProcess:
        self.wait_until(lambda: " ready." in self.logs(), timeout_s)
        return self

    def start(self, timeout_s: float = 30.0) -> WorkerProcess:
        self.launch()
        return self.wait_ready(timeout_s)

    def __enter__(self) -> WorkerProcess:
        return self.start()


def received_ids(lines: Iterable[str]) -> set[str]:
    """Task ids a worker logged as received (``Task find_contact[<id>] received``)."""
    out = set()
    for line in lines:
        start = line.find("find_contact[")
        if start >= 0 and "received" in line[start:]:
            out.add(line[start + len("find_contact[") :].split("]", 1)[0])
    return out


# ----- results ---------------------------------------------------------------------------------
def metas(client: redis.Redis, ids: list[str]) -> dict[str, dict[str, Any]]:
    """The stored meta of each task id that has one (one MGET per 200 ids)."""
    out: dict[str, dict[str, Any]] = {}
    for i in range(0, len(ids), 200):
        chunk = ids[i : i + 200]
        for task_id, raw in zip(chunk, client.mget([META_PREFIX + t for t in chunk]), strict=True):
            if raw is not None:
                out[task_id] = json.loads(raw)
    return out


def finished(client: redis.Redis, ids: list[str]) -> dict[str, dict[str, Any]]:
    return {t: m for t, m in metas(client, ids).items() if m.get("status") == "SUCCESS"}


def wait_finished(
    client: redis.Redis, ids: list[str], timeout_s: float
) -> dict[str, dict[str, Any]]:
    """Poll until every id has a SUCCESS meta or the time is up; the finished ones."""
    deadline = time.monotonic() + timeout_s
    done: dict[str, dict[str, Any]] = {}
    while time.monotonic() < deadline:
        done = finished(client, ids)
        if len(done) == len(ids):
            break
        time.sleep(0.1)
    return done


# ----- Redis scans -----------------------------------------------------------------------------
def redis_texts(client: redis.Redis) -> Iterator[tuple[str, bytes]]:
    """Every key of the client's database with each of its values, type-aware."""
    for key in client.scan_iter(count=500):
        name = key.decode(errors="replace")
        yield name, key
        kind = client.type(key).decode()
        if kind == "string":
            yield name, client.get(key) or b""
        elif kind == "list":
            for item in client.lrange(key, 0, -1):
                yield name, item
        elif kind == "hash":
            for field, value in client.hgetall(key).items():
                yield name, field
                yield name, value
        elif kind == "set":
            for item in client.smembers(key):
                yield name, item
        elif kind == "zset":
            for item, _ in client.zrange(key, 0, -1, withscores=True):
                yield name, item
        elif kind == "stream":
            for _, fields in client.xrange(key):
                for field, value in fields.items():
                    yield name, field
                    yield name, value


def scan_redis(client: redis.Redis, needle: str) -> tuple[int, int, list[str]]:
    """(keys scanned, values scanned, keys whose name or values hold ``needle``)."""
    raw = needle.encode()
    keys: set[str] = set()
    values = 0
    hits: list[str] = []
    for name, data in redis_texts(client):
        keys.add(name)
        values += 1
        if raw in data and name not in hits:
            hits.append(name)
    return len(keys), values, hits


# ----- connections files -----------------------------------------------------------------------
def toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return str(value)
    return json.dumps(str(value))  # a TOML basic string is a JSON string


def write_connections(
    path: Path, tables: Mapping[str, Mapping[str, Any]], default: str | None = None
) -> Path:
    """A connections file with one ``[connections.NAME]`` table each, and ``[extensions]``."""
    lines = []
    for name, table in tables.items():
        lines.append(f"[connections.{name}]")
        lines += [f"{k} = {toml_value(v)}" for k, v in table.items()]
    if default is not None:
        lines += ["[extensions]", f"default = {toml_value(default)}"]
    path.write_text("\n".join(lines) + "\n")
    return path


# ----- simulators ------------------------------------------------------------------------------
CONTACTS = ROOT / "tests" / "contract" / "contacts.json"  # every simulator's seed


def available_crms() -> list[str]:
    """FakeCRM, and every vendor whose connector and simulator both exist (others are being
    written in parallel: they join the fault suite as soon as they land)."""
    return ["fakecrm", *VENDORS]


def simulator_class(crm: str) -> type[Simulator]:
    if crm == "fakecrm":
        return FakeCRM
    cls: type[Simulator] = importlib.import_module(f"crmsim.{crm}").SIMULATOR
    return cls


def quick_drip(sim: Simulator) -> Simulator:
    """crmsim's slow-drip, scaled down: each byte within any socket read timeout, the whole
    body 3 s (crmsim's default takes 53 s, which a test cannot wait out)."""
    sim.drip_bytes, sim.drip_every_s = 30, 0.1
    return sim
