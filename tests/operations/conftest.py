"""Operations tests: real worker and webhook processes (the ``contact-lookup`` commands),
Redis database 13 (flushed around each test), metrics scraped over HTTP, log lines read back
from the processes' own output."""

from __future__ import annotations

import json
import re
import sys
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from localredis import free_port
from tests.conftest import CORE_DB, EXAMPLES, flushed_db
from tests.fakecrm import wait_for
from tests.processes import Proc, base_env

CONTACTS: list[dict[str, Any]] = json.loads((EXAMPLES / "contacts.json").read_text())


def personal_data() -> list[str]:
    """Every name, e-mail and full phone number (as written, and its digits; 7 digits or
    more, so an extension such as 102 is not one) of the contacts file: none may appear in
    a log line."""
    out: set[str] = set()
    for c in CONTACTS:
        for key in ("name", "email"):
            if c.get(key):
                out.add(str(c[key]))
        for number in [c.get("phone"), *(c.get("phones") or [])]:
            digits = re.sub(r"\D", "", str(number or ""))
            if len(digits) >= 7:
                out.update((str(number), digits))
    return sorted(out)


def scrape(url: str, headers: dict[str, str] | None = None) -> dict[str, float]:
    """The Prometheus text at ``url`` as {'name{labels}': value} (labels sorted as given)."""
    assert url.startswith("http://127.0.0.1:")
    request = urllib.request.Request(url, headers=headers or {})  # noqa: S310
    with urllib.request.urlopen(request, timeout=10) as r:  # noqa: S310
        text = r.read().decode()
    samples = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            key, _, value = line.rpartition(" ")
            samples[key] = float(value)
    return samples


def sample(samples: dict[str, float], name: str, **labels: str) -> float:
    """The sum of ``name``'s samples whose labels include ``labels``."""
    total = 0.0
    for key, value in samples.items():
        metric, _, rest = key.partition("{")
        if metric != name:
            continue
        found = dict(re.findall(r'(\w+)="([^"]*)"', rest))
        if all(found.get(k) == v for k, v in labels.items()):
            total += value
    return total


@pytest.fixture
def ops_url() -> Iterator[str]:
    with flushed_db(CORE_DB) as url:
        yield url


@pytest.fixture
def connections(tmp_path: Path) -> Path:
    (tmp_path / "contacts.json").write_bytes((EXAMPLES / "contacts.json").read_bytes())
    path = tmp_path / "cl.toml"
    path.write_bytes((EXAMPLES / "contact-lookup.toml").read_bytes())
    return path


def command(*args: str) -> list[str]:
    return [sys.executable, "-m", "producers.cli", *args]


def start(proc: Proc, ready_url: str | None = None, timeout_s: float = 40) -> Proc:
    def up() -> bool:
        if ready_url is None:
            return " ready." in proc.logs()
        try:
            with urllib.request.urlopen(ready_url, timeout=1):  # noqa: S310
                return True
        except OSError:
            return False

    return proc.launch().wait_until(up, timeout_s)


def start_on_free_port(
    make: Callable[[int], Proc], ready_url: Callable[[int], str] | None = None, attempts: int = 3
) -> tuple[Proc, int]:
    """Start ``make(port)`` on a free port; again on another when the port was taken between
    choosing and binding it (another process's outgoing connection can grab it)."""
    for _ in range(attempts):
        port = free_port()
        proc = make(port)
        try:
            return start(proc, ready_url(port) if ready_url else None), port
        except AssertionError as exc:
            logs = str(exc) + proc.logs()
            if "already in use" not in logs and "Connection in use" not in logs:  # gunicorn's
                raise
    raise AssertionError(f"no free port after {attempts} attempts")


__all__ = ["Proc", "base_env", "free_port", "wait_for"]
