"""Domain metrics (Prometheus, ``prometheus_client``): the one place that defines them.

A leaf module: it imports only ``prometheus_client`` and ``contact_lookup.model``, so every
layer (connectors, core, tasks, producers) may record through it. Label values are bounded
sets: connection names from the connections file, purposes, outcomes, HTTP status codes,
reason classes. Never a phone number, a name or free text.

Metric (type; labels): meaning. The README's "Operating it" section has the same table.

- ``contact_lookup_lookups_total`` (counter; purpose, connection, outcome): finished lookups;
  outcome ``matched``, ``not_found``, ``failed``, ``cached`` or ``coalesced``.
- ``contact_lookup_lookup_failures_total`` (counter; connection, error_type): failed lookups
  by ``extraDataTracking.errorType``.
- ``contact_lookup_crm_requests_total`` (counter; connection, status): CRM HTTP requests;
  status the HTTP code, or ``error`` when no response came back.
- ``contact_lookup_crm_request_seconds`` (histogram; connection): one CRM request, body read.
- ``contact_lookup_rate_limit_deferrals_total`` (counter; connection, purpose): lookups the
  shared limiter deferred before any CRM request.
- ``contact_lookup_rate_budget_remaining`` (gauge; connection): requests left in the shared
  window after the last grant.
- ``contact_lookup_call_pop_seconds`` (histogram; path): time to the call pop's PUBLISH;
  ``cached`` from the delivery's arrival at the producer, ``worker`` from the job being sent.
- ``contact_lookup_webhook_deliveries_total`` (counter; action, reason): one per event step
  (``enqueued``, ``answered-from-cache``, ``duplicate``, ``skipped``) or refused request
  (``refused``; reason ``unauthorized``, ``too_large``, ``too_deep``, ``malformed``,
  ``not_object``, ``unavailable``).
- ``contact_lookup_token_refreshes_total`` (counter; connection, outcome): OAuth refreshes,
  ``ok`` or ``failed``; recorded by contact_lookup.auth.manager through ``token_refreshed``.
- ``contact_lookup_token_expiry_timestamp_seconds`` (gauge; connection): when the access
  token expires (Unix seconds); set by contact_lookup.auth.manager on each refresh.

Processes: where ``PROMETHEUS_MULTIPROC_DIR`` is set before ``prometheus_client`` is first
imported, values live in memory-mapped files there and ``registry()`` aggregates every
process's files (prefork pools, gunicorn workers). Otherwise each process counts in memory.
``contact-lookup worker --metrics-port`` and ``contact-lookup webhook`` set it up themselves
(``contact_lookup.metrics_env``). Source: prometheus_client's "Multiprocess Mode"
documentation (https://prometheus.github.io/client_python/multiprocess/).

Dead processes: each process writes ``<type>_<pid>.db`` files, and a prefork child replaced
after ``--max-tasks-per-child`` (or a restarted gunicorn worker) leaves its files behind: a
counter must keep their values, but the directory would grow by one set per child ever run.
At each scrape, ``compact_dead`` folds the files of processes that no longer exist into one
``<type>_archive.db`` per type (counters and histograms added, ``mostrecent`` gauges by
their timestamp; ``live*`` gauge files removed as ``mark_process_dead`` does) under a file
lock, so the values stay and the files do not pile up. The directory must therefore belong
to one host's processes (a PID is only meaningful there), as prometheus_client requires.
"""

from __future__ import annotations

import contextlib
import fcntl
import glob
import os
import re
from collections.abc import Iterator, Mapping
from typing import Any

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
    generate_latest,
)

# No ``*_created`` series beside every counter and histogram: a timestamp per label set that
# no dashboard here uses (prometheus_client documents the switch).
disable_created_metrics()

__all__ = ["CONTENT_TYPE_LATEST", "exposition", "registry"]

OUTCOMES = ("matched", "not_found", "failed", "cached", "coalesced")

LOOKUPS = Counter(
    "contact_lookup_lookups",
    "Finished lookups by purpose, connection and outcome.",
    ["purpose", "connection", "outcome"],
)
LOOKUP_FAILURES = Counter(
    "contact_lookup_lookup_failures",
    "Failed lookups by connection and errorType.",
    ["connection", "error_type"],
)
CRM_REQUESTS = Counter(
    "contact_lookup_crm_requests",
    "CRM HTTP requests by connection and status (HTTP code, or 'error').",
    ["connection", "status"],
)
CRM_REQUEST_SECONDS = Histogram(
    "contact_lookup_crm_request_seconds",
    "Duration of one CRM request, body included, in seconds.",
    ["connection"],
    buckets=(0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)
DEFERRALS = Counter(
    "contact_lookup_rate_limit_deferrals",
    "Lookups deferred by the shared rate limiter, before any CRM request.",
    ["connection", "purpose"],
)
BUDGET_REMAINING = Gauge(
    "contact_lookup_rate_budget_remaining",
    "Requests left in the connection's shared rate-limit window after the last grant.",
    ["connection"],
    multiprocess_mode="mostrecent",
)
CALL_POP_SECONDS = Histogram(
    "contact_lookup_call_pop_seconds",
    "Call pop latency until it is published, by path (cached or worker), in seconds.",
    ["path"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 20),
)
WEBHOOK_DELIVERIES = Counter(
    "contact_lookup_webhook_deliveries",
    "Webhook outcomes: one per event step, or one per refused request.",
    ["action", "reason"],
)
TOKEN_REFRESHES = Counter(
    "contact_lookup_token_refreshes",
    "OAuth access-token refreshes by connection and outcome (ok, failed).",
    ["connection", "outcome"],
)
TOKEN_EXPIRY = Gauge(
    "contact_lookup_token_expiry_timestamp_seconds",
    "When the connection's access token expires, as Unix seconds.",
    ["connection"],
    multiprocess_mode="mostrecent",
)

EXPORTED = (
    "contact_lookup_lookups_total",
    "contact_lookup_lookup_failures_total",
    "contact_lookup_crm_requests_total",
    "contact_lookup_crm_request_seconds",
    "contact_lookup_rate_limit_deferrals_total",
    "contact_lookup_rate_budget_remaining",
    "contact_lookup_call_pop_seconds",
    "contact_lookup_webhook_deliveries_total",
    "contact_lookup_token_refreshes_total",
    "contact_lookup_token_expiry_timestamp_seconds",
)


def outcome(result: Mapping[str, Any]) -> str:
    """A result's outcome label: failed, cached, coalesced, matched or not_found."""
    if not result.get("successful"):
        return "failed"
    tracking = result.get("extraDataTracking") or {}
    if tracking.get("isCached"):
        return "cached"
    if tracking.get("isCoalesced"):
        return "coalesced"
    contacts = result.get("matchedContactInfo") or []
    real = [c for c in contacts if isinstance(c, Mapping) and not c.get("isNewContact")]
    return "matched" if real else "not_found"


def _label(value: object, fallback: str = "unknown") -> str:
    """A label value from a bounded vocabulary: short identifier text only, else fallback."""
    text = str(value) if value is not None else ""
    return text if re.fullmatch(r"[A-Za-z_][\w.-]{0,63}", text) else fallback


def count_lookup(purpose: object, connection: object, result: Mapping[str, Any]) -> str:
    """Count one finished lookup; returns its outcome label."""
    label = outcome(result)
    LOOKUPS.labels(_label(purpose), _label(connection), label).inc()
    if label == "failed":
        error_type = (result.get("extraDataTracking") or {}).get("errorType")
        LOOKUP_FAILURES.labels(_label(connection), _label(error_type)).inc()
    return label


def observe_crm_request(connection: str, status: int | None, seconds: float) -> None:
    """One CRM request: its HTTP status (None: no response) and duration in seconds."""
    CRM_REQUESTS.labels(_label(connection), str(status) if status else "error").inc()
    CRM_REQUEST_SECONDS.labels(_label(connection)).observe(seconds)


def count_deferral(connection: str, purpose: str) -> None:
    DEFERRALS.labels(_label(connection), _label(purpose)).inc()


def set_budget_remaining(connection: str, remaining: int) -> None:
    BUDGET_REMAINING.labels(_label(connection)).set(max(0, remaining))


def observe_call_pop(path: str, seconds: float) -> None:
    """A call pop published ``seconds`` after it started; path ``cached`` or ``worker``."""
    CALL_POP_SECONDS.labels(path).observe(max(0.0, seconds))


# Webhook skip reasons are sentences (producers.events); the label is their class.
_REASON_CLASSES = (
    ("unknown event", "unknown_event"),
    ("without parties", "no_parties"),
    ("already done", "already_done"),
    ("already processed", "already_processed"),
    ("out of order", "out_of_order"),
    ("stale", "stale"),
    ("transfer", "transfer"),
    ("status", "status"),
    ("short code", "short_code"),
    ("anonymous", "anonymous"),
    ("extension", "extension"),
    ("connection", "no_connection"),
    ("number", "number"),
    ("not a notification", "not_a_notification"),
)


def reason_class(reason: str | None) -> str:
    """A bounded label for a free-text skip reason (never the text itself)."""
    if not reason:
        return "none"
    low = reason.lower()
    return next((label for needle, label in _REASON_CLASSES if needle in low), "other")


def count_delivery(action: str, reason: str | None = None) -> None:
    """One webhook step (action + reason sentence) or refusal (``refused`` + a short code)."""
    code = reason if action == "refused" else reason_class(reason)
    WEBHOOK_DELIVERIES.labels(_label(action), _label(code, "other")).inc()


def token_refreshed(connection: str, ok: bool, expires_at: float | None = None) -> None:
    """For the OAuth code: a refresh happened; ``expires_at`` the new token's expiry (Unix s)."""
    TOKEN_REFRESHES.labels(_label(connection), "ok" if ok else "failed").inc()
    if ok and expires_at is not None:
        TOKEN_EXPIRY.labels(_label(connection)).set(expires_at)


_DB_FILE = re.compile(r"^(counter|histogram|summary|gauge_[a-z]+)_(\d+)\.db$")
_ADDED = ("counter", "histogram", "summary")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process: alive
        return True
    return True


@contextlib.contextmanager
def _locked(path: str) -> Iterator[None]:
    with open(os.path.join(path, ".compact.lock"), "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def compact_dead(path: str) -> int:
    """Fold the metric files of dead processes in ``path`` into ``<type>_archive.db``; the
    number of files folded. Call under ``_locked(path)`` (see the module docstring)."""
    from prometheus_client.mmap_dict import MmapedDict

    folded = 0
    for name in sorted(os.listdir(path)):
        match = _DB_FILE.match(name)
        if not match or _alive(int(match.group(2))):
            continue
        kind, source = match.group(1), os.path.join(path, name)
        if kind.startswith("gauge_live"):  # a dead process's live gauge is gone
            os.remove(source)
            folded += 1
            continue
        if kind not in _ADDED and kind != "gauge_mostrecent":
            continue  # min/max/sum/all gauges: no such metric here; left as they are
        archive = MmapedDict(os.path.join(path, f"{kind}_archive.db"))
        try:
            for key, value, timestamp, _ in MmapedDict.read_all_values_from_file(source):
                old, old_timestamp = archive.read_value(key)
                if kind in _ADDED:
                    archive.write_value(key, old + value, max(old_timestamp, timestamp))
                elif timestamp >= old_timestamp:
                    archive.write_value(key, value, timestamp)
        finally:
            archive.close()
        os.remove(source)
        folded += 1
    return folded


class _CompactingCollector:
    """prometheus_client's multiprocess collector, folding dead processes' files first."""

    def __init__(self, path: str) -> None:
        self.path = path

    def collect(self) -> Any:
        from prometheus_client.multiprocess import MultiProcessCollector

        with _locked(self.path):
            compact_dead(self.path)
            files = glob.glob(os.path.join(self.path, "*.db"))
            return MultiProcessCollector.merge(files, accumulate=True)


def registry() -> CollectorRegistry:
    """What to expose: every process's values in multiprocess mode (dead ones' included,
    their files folded), else this process's."""
    path = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if path:
        combined = CollectorRegistry()
        combined.register(_CompactingCollector(path))
        return combined
    return REGISTRY


def exposition() -> bytes:
    """The text exposition format of ``registry()`` (Content-Type ``CONTENT_TYPE_LATEST``)."""
    return generate_latest(registry())
