"""``contact-lookup demo`` (what ``make demo`` runs): the main job, end to end.

Starts a real Celery worker process against the configured Redis, then runs a scripted tour
through the worker (a match through a phone format, a cache hit, a forced refresh, the
resolver on a shared number and its missing-createdDate warning, an extension, an invalid
number) and replays a recorded stream of RingCentral events, printing call pops as they are
published and logging results as they complete. Exits 1 if any step misbehaves.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from contact_lookup.core.request import LookupRequest
from contact_lookup.model.purpose import PURPOSES
from contact_lookup.settings import Settings
from tasks.celery_app import ContactLookupCelery
from tasks.enqueue import enqueue

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def _summary(result: dict[str, Any]) -> str:
    names = [c["name"] for c in result["matchedContactInfo"] if not c.get("isNewContact")]
    bits = [f"successful={result['successful']}", f"contacts={names}"]
    if result["extraDataTracking"].get("isCached"):
        bits.append("from cache")
    if "resolution" in result:
        bits.append(f"resolution={json.dumps(result['resolution'])}")
    if result.get("returnMessage"):
        bits.append(
            f"{result['returnMessage']['messageType']}: {result['returnMessage']['message']}"
        )
    return "; ".join(bits)


Check = Callable[[dict[str, Any]], bool]

TOUR: list[tuple[str, LookupRequest, Check]] = [
    (
        "Match through a format: the CRM stores (415) 555-0100, the call shows +14155550100",
        LookupRequest("+14155550100", force_refresh=True),
        lambda r: (
            r["successful"]
            and r["matchedContactInfo"][0]["id"] == "c-1001"
            and not r["extraDataTracking"].get("isCached")
        ),
    ),
    (
        "The same number again: answered from the cache, no CRM request",
        LookupRequest("+14155550100"),
        lambda r: r["extraDataTracking"].get("isCached") is True,
    ),
    (
        "A forced refresh bypasses the cache",
        LookupRequest("+14155550100", force_refresh=True),
        lambda r: r["successful"] and not r["extraDataTracking"].get("isCached"),
    ),
    (
        "A number shared by three contacts, logged: earliest-created picks one",
        LookupRequest("+14155550123", purpose="call_log", force_refresh=True),
        lambda r: r.get("resolution", {}).get("contactId") == "c-1004",
    ),
    (
        "A shared number where one contact has an ambiguous date (01/02/2018)",
        LookupRequest("+14155550177", purpose="call_log"),
        lambda r: r.get("resolution", {}).get("reason") == "missing-created-date",
    ),
    (
        "An internal extension",
        LookupRequest("102", is_extension=True),
        lambda r: r["successful"] and r["matchedContactInfo"][0]["id"] == "c-1008",
    ),
    (
        "An invalid number: a clear failure and no CRM request",
        LookupRequest("12345"),
        lambda r: r["successful"] is False,
    ),
]


def start_worker(settings: Settings) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "celery",
            "-A",
            "worker",
            "worker",
            "-Q",
            ",".join(PURPOSES),
            "--pool",
            "threads",
            "-c",
            "4",
            "-n",
            f"demo-{os.getpid()}@%h",
            "--loglevel",
            # DEMO_LOG_LEVEL=INFO shows each job's log line (tests scan them for contact data).
            os.environ.get("DEMO_LOG_LEVEL", "WARNING"),
            "--without-gossip",
            "--without-mingle",
        ],
        env=dict(os.environ, CONTACT_LOOKUP_CONFIG=settings.config_path),
    )


def wait_for_worker(
    app: ContactLookupCelery, proc: subprocess.Popen[bytes], timeout_s: float = 30
) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit("demo: the worker exited during start-up")
        if app.control.ping(timeout=0.5):
            return
    raise SystemExit("demo: the worker did not answer within 30 s")


def tour(app: ContactLookupCelery) -> bool:
    ok = True
    for step, (title, query, check) in enumerate(TOUR, 1):
        result = enqueue(app, "demo", query).get(timeout=30)
        good = check(result)
        ok &= good
        print(f"\n{step}. {title}\n   {'ok ' if good else 'UNEXPECTED '}{_summary(result)}")
    return ok


def replay_events(settings: Settings, events: Path) -> bool:
    """Replay a recorded RingCentral stream, printing call pops and logging results."""
    from producers.demo_replay import replay_and_print

    return replay_and_print(settings, events)
