"""Shared helpers of the fault suite: worker subprocesses, result polling, Redis scans, and the
figures each test reports (printed by conftest.py's terminal summary)."""

from __future__ import annotations

import importlib
import importlib.util
import json
import time
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

import redis

from crmsim import VENDORS
from crmsim.base import Simulator
from tests.conftest import ROOT
from tests.fakecrm import FakeCRM
from tests.processes import Proc, WorkerProcess, base_env

__all__ = ["Proc", "WorkerProcess", "base_env"]

FAULTS_DB = 10
FIGURES: dict[str, dict[str, Any]] = {}
META_PREFIX = "celery-task-meta-"  # Celery's Redis result backend key for a task id


def figure(name: str, **values: Any) -> None:
    """Record one figure for the README (shown in pytest's terminal summary)."""
    FIGURES[name] = values
    print(f"FAULTS {name}: " + ", ".join(f"{k}={v}" for k, v in values.items()))


# ----- worker subprocesses: tests/processes.py -------------------------------------------------


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
CONTACTS = ROOT / "contact_lookup" / "testing" / "contacts.json"  # every simulator's seed


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
