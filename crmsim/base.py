"""Local HTTP simulators of CRM APIs: the base every vendor simulator builds on.

A simulator is a real HTTP/1.1 keep-alive server on 127.0.0.1 that reproduces one vendor's
contract (search request, match semantics, auth scheme and 401 body, pagination, created-date
field, rate-limit headers and 429). This module owns what every vendor shares: the threaded
server, seeding from a spec-shaped contacts file, a fixed-window rate limit, latency, injected
faults, and request counters that tests and benchmarks assert on. A vendor subclass implements
``route`` (and usually ``rate_limit_headers`` and ``rate_limit_response``).

Seed records are in the findContact contact shape (``id``, ``name``, ``phone`` or
``phones``, ``type``, ``title``, ``company``, ``email``, ``createdDate``,
``mostRecentActivityDate``); each vendor maps them to its own field names and date format.
"""

from __future__ import annotations

import json
import re
import socket
import threading
import time
from collections import Counter, deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, ClassVar
from urllib.parse import parse_qs, urlsplit

from dateutil import parser as dateutil_parser

FAULTS = (
    "500",
    "502",
    "503",
    "timeout",
    "malformed",
    "truncated",
    "huge",
    "slow-drip",
    "reset",
    "empty",
)


@dataclass
class SimRequest:
    method: str
    path: str
    query: dict[str, list[str]]
    headers: Mapping[str, str]
    body: bytes

    def arg(self, name: str, default: str | None = None) -> str | None:
        values = self.query.get(name)
        return values[0] if values else default

    def header(self, name: str) -> str | None:
        return self.headers.get(name)

    def json(self) -> Any:
        try:
            return json.loads(self.body or b"null")
        except ValueError:
            return None


@dataclass
class SimResponse:
    status: int = 200
    body: Any = None  # dict/list -> JSON; bytes/str sent as is; None -> empty
    headers: dict[str, str] = field(default_factory=dict)

    def encoded(self) -> bytes:
        if self.body is None:
            return b""
        if isinstance(self.body, bytes):
            return self.body
        if isinstance(self.body, str):
            return self.body.encode()
        return json.dumps(self.body).encode()


@dataclass
class WindowState:
    """Fixed-window rate-limit state after counting one request."""

    limit: int
    remaining: int
    window_s: float
    reset_at: float  # epoch seconds when the window ends
    allowed: bool

    @property
    def retry_after_s(self) -> float:
        return max(0.0, self.reset_at - time.time())


class RateWindow:
    def __init__(self, limit: int, window_s: float) -> None:
        self.limit, self.window_s = limit, window_s
        self.start = time.time()
        self.count = 0
        self.lock = threading.Lock()

    def hit(self) -> WindowState:
        with self.lock:
            now = time.time()
            if now - self.start >= self.window_s:
                self.start, self.count = now, 0
            self.count += 1
            allowed = self.count <= self.limit
            return WindowState(
                self.limit,
                max(0, self.limit - self.count),
                self.window_s,
                self.start + self.window_s,
                allowed,
            )


def load_contacts(source: str | Path | Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    if isinstance(source, str | Path):
        data = json.loads(Path(source).read_text(encoding="utf-8"))
    else:
        data = list(source)
    return [dict(c) for c in data]


def seed_date(value: object) -> datetime | None:
    """A seed contact's date as an aware datetime: epoch seconds or milliseconds, or any
    ISO 8601 / RFC 2822 string (dateutil). The simulators then write it in their vendor's
    own format; the product's parsing (contact_lookup.model.dates) is not used here, so the
    simulators cannot share its mistakes."""
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        seconds = value / 1000 if abs(value) >= 1e11 else value
        return datetime.fromtimestamp(seconds, UTC)
    if not isinstance(value, str) or not value.strip():
        return None
    dotnet = re.fullmatch(r"/Date\((-?\d+)\)/", value.strip())  # Microsoft JSON date, in ms
    if dotnet:
        return datetime.fromtimestamp(int(dotnet.group(1)) / 1000, UTC)
    try:
        when = dateutil_parser.parse(value)
    except (ValueError, OverflowError):
        return None
    return when.astimezone(UTC) if when.tzinfo else when.replace(tzinfo=UTC)


def phones_of(contact: Mapping[str, Any]) -> list[str]:
    """Every phone string of a seed record, ``phone`` first."""
    out = [contact["phone"]] if isinstance(contact.get("phone"), str) else []
    out += [p for p in contact.get("phones") or [] if isinstance(p, str)]
    return list(dict.fromkeys(out))


class Simulator:
    """Base vendor simulator. Start with ``with ClioSimulator(contacts) as sim: sim.url``."""

    name: ClassVar[str] = "base"
    default_rate_limit: ClassVar[tuple[int, float] | None] = None
    oauth: Any = None  # crmsim.oauth.OAuthServer once crmsim.oauth.enable(sim) is called
    _init_args: tuple[tuple[Any, ...], dict[str, Any]]

    def __new__(cls, *args: Any, **kwargs: Any) -> Simulator:
        # The constructor's arguments, so ``reseed`` can build the vendor's data afresh the
        # way the vendor's own __init__ does, whatever it is called.
        self = super().__new__(cls)
        self._init_args = (args, kwargs)
        return self

    def __init__(
        self,
        contacts: str | Path | Iterable[Mapping[str, Any]] = (),
        *,
        token: str = "sim-token",
        rate_limit: tuple[int, float] | None = None,
        latency_s: float = 0.0,
        port: int = 0,
        host: str = "127.0.0.1",
        hang_s: float = 30.0,
    ) -> None:
        self.contacts = load_contacts(contacts)
        self.token = token
        self.latency_s = latency_s
        self.hang_s = hang_s  # how long a "timeout" fault holds the request
        # The "slow-drip" fault: a body of drip_bytes, one byte every drip_every_s.
        self.drip_bytes, self.drip_every_s = 212, 0.25
        self.window: RateWindow | None = None
        self.set_rate_limit(rate_limit or self.default_rate_limit)
        self.faults: deque[str] = deque()
        self.lock = threading.Lock()
        self.requests = 0  # every request received
        self.rate_limited = 0  # requests answered with the vendor's rate-limit error
        self.by_path: Counter[str] = Counter()
        self.queries: list[str] = []  # phone query strings seen, for assertions
        self.in_flight = 0
        self.max_in_flight = 0
        self._server = _Server((host, port), _Handler)
        self._server.simulator = self
        self._thread: threading.Thread | None = None
        self.forced_429: deque[float | None] = deque()  # POST /_contract/fault {"fault": "429"}
        self._base_keys = frozenset(vars(self)) - {"contacts"}

    # ----- lifecycle -------------------------------------------------------------------------
    @property
    def port(self) -> int:
        port: int = self._server.server_address[1]
        return port

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> Simulator:
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            args=(0.05,),  # shutdown() waits up to one poll interval: keep teardown quick
            name=f"crmsim-{self.name}",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def __enter__(self) -> Simulator:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ----- knobs -----------------------------------------------------------------------------
    def set_rate_limit(self, rate_limit: tuple[int, float] | None) -> None:
        self.window = RateWindow(*rate_limit) if rate_limit else None

    def inject(self, fault: str, count: int = 1) -> None:
        """Answer the next ``count`` requests with ``fault`` (one of FAULTS)."""
        if fault not in FAULTS:
            raise ValueError(f"unknown fault {fault!r}; known: {', '.join(FAULTS)}")
        with self.lock:
            self.faults.extend([fault] * count)

    def force_rate_limited(self, count: int = 1, retry_after_s: float | None = None) -> None:
        """Answer the next ``count`` requests with the vendor's rate-limit answer (and
        ``Retry-After`` when given), whatever the window says."""
        with self.lock:
            self.forced_429.extend([retry_after_s] * count)

    def reseed(self, contacts: Iterable[Mapping[str, Any]], token: str | None = None) -> None:
        """Serve ``contacts`` from now on (and accept ``token``, when given): the vendor's data
        is built by its own constructor on a throwaway instance, then taken over; the server,
        counters, faults, rate limit and OAuth state of this one stay."""
        args, kwargs = self._init_args
        kwargs = {**kwargs, "port": 0, "token": token or self.token}
        kwargs.pop("contacts", None)
        fresh = type(self)(list(contacts), *args[1:], **kwargs)
        fresh._server.server_close()
        with self.lock:
            for key, value in vars(fresh).items():
                if key not in self._base_keys or key == "token":
                    setattr(self, key, value)

    def reset_counters(self) -> None:
        with self.lock:
            self.requests = self.rate_limited = 0
            self.by_path.clear()
            self.queries.clear()
            self.max_in_flight = 0

    # ----- what a test harness needs to build a connection -----------------------------------
    # The connections file's ``crm`` for this simulator's connector (default: its name).
    crm: ClassVar[str | None] = None

    def connection(self) -> dict[str, Any]:
        """The connections-file table for a connector pointed at this simulator."""
        return {"crm": self.crm or self.name, "base_url": self.url, "token_env": self.token_env}

    @property
    def token_env(self) -> str:
        return f"CRMSIM_{self.name.upper()}_TOKEN"

    def env(self) -> dict[str, str]:
        """Environment variables holding the secrets ``connection()`` names."""
        return {self.token_env: self.token}

    # ----- vendor hooks ----------------------------------------------------------------------
    def route(self, req: SimRequest) -> SimResponse:
        """Authenticate and answer one request. Vendor subclasses implement this."""
        raise NotImplementedError

    def rate_limit_headers(self, state: WindowState) -> dict[str, str]:
        """The vendor's rate-limit headers, sent on every response while a limit is set."""
        return {}

    def rate_limit_response(self, state: WindowState) -> SimResponse:
        """The vendor's answer to a request over the limit."""
        return SimResponse(
            429,
            {"error": "rate limit exceeded"},
            {"Retry-After": str(max(1, round(state.retry_after_s)))},
        )

    def record_query(self, query: str) -> None:
        with self.lock:
            self.queries.append(query)

    # ----- concurrency ----------------------------------------------------------------------
    def request_arrived(self) -> None:
        """Count a request in flight (``in_flight``; the most at once in ``max_in_flight``)."""
        with self.lock:
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)

    def request_answered(self) -> None:
        """The request's answer is decided: it no longer counts as in flight."""
        with self.lock:
            self.in_flight -= 1

    # ----- dispatch --------------------------------------------------------------------------
    def _dispatch(self, req: SimRequest) -> tuple[SimResponse | None, str | None]:
        from crmsim import control

        if (answer := control.handle(self, req)) is not None:
            return answer, None  # the contract's control protocol (crmsim/control.py)
        if self.oauth is not None and (answer := self.oauth.handle(req)) is not None:
            return answer, None  # the vendor's token endpoint / authorize page (crmsim/oauth.py)
        with self.lock:
            self.requests += 1
            self.by_path[req.path] += 1
            fault = self.faults.popleft() if self.faults else None
        if self.latency_s:
            time.sleep(self.latency_s)
        if fault:
            return None, fault
        state = self.window.hit() if self.window else None
        with self.lock:
            forced = self.forced_429.popleft() if self.forced_429 else False
        if forced is not False:
            wait = 1.0 if forced is None else forced
            state = WindowState(state.limit if state else 1, 0, wait, time.time() + wait, False)
            with self.lock:
                self.rate_limited += 1
            resp = self.rate_limit_response(state)
            if forced is not None:
                resp.headers.setdefault("Retry-After", str(max(0, round(forced))))
        elif state is not None and not state.allowed:
            with self.lock:
                self.rate_limited += 1
            resp = self.rate_limit_response(state)
        else:
            resp = self.route(req)
        if state is not None:
            resp.headers = {**self.rate_limit_headers(state), **resp.headers}
        return resp, None


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 256
    simulator: Simulator


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # Without this, keep-alive responses stall ~40 ms (Nagle + delayed ACK): see docs/contracts.md.
    disable_nagle_algorithm = True
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:
        pass  # quiet: tests and benchmarks read counters, not access logs

    def _handle(self) -> None:
        sim = self.server.simulator
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        parts = urlsplit(self.path)
        req = SimRequest(
            self.command,
            parts.path,
            parse_qs(parts.query, keep_blank_values=True),
            {k: v for k, v in self.headers.items()},
            body,
        )
        sim.request_arrived()
        try:
            resp, fault = sim._dispatch(req)
        finally:
            # Before the answer is written: a client that has the answer may send its next
            # request at once, and must not find this one still counted.
            sim.request_answered()
        if fault:
            self._fault(fault, sim)
        else:
            assert resp is not None
            self._send(resp.status, resp.encoded(), resp.headers)

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _handle

    def _send(
        self,
        status: int,
        payload: bytes,
        headers: Mapping[str, str],
        content_type: str = "application/json",
    ) -> None:
        self.send_response(status)
        if payload or status != 204:
            self.send_header("Content-Type", headers.get("Content-Type", content_type))
        for key, value in headers.items():
            if key.lower() != "content-type":
                self.send_header(key, value)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        if payload:
            self.wfile.write(payload)

    def _fault(self, fault: str, sim: Simulator) -> None:
        if fault in ("500", "502", "503"):
            self._send(
                int(fault),
                b"<html><body>Service temporarily unavailable</body></html>",
                {},
                "text/html",
            )
        elif fault == "timeout":
            time.sleep(sim.hang_s)
            self.close_connection = True
        elif fault == "malformed":
            self._send(200, b"<html>not json at all", {})
        elif fault == "empty":
            self._send(200, b"", {})
        elif fault == "truncated":
            # Promise a whole body, send half, hang up: what a proxy cut-off looks like.
            full = json.dumps({"data": [{"id": 1, "name": "x" * 200}]}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(full)))
            self.end_headers()
            self.wfile.write(full[: len(full) // 2])
            self.wfile.flush()
            self.connection.shutdown(socket.SHUT_RDWR)
            self.close_connection = True
        elif fault == "huge":
            size = 32 * 1024 * 1024
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(size))
            self.end_headers()
            chunk = b" " * 65536
            try:
                for _ in range(size // len(chunk)):
                    self.wfile.write(chunk)
            except OSError:
                pass  # the client stopped reading, as it should
            self.close_connection = True
        elif fault == "slow-drip":
            payload = json.dumps({"data": []}).encode().ljust(sim.drip_bytes)
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            try:
                for i in range(len(payload)):
                    self.wfile.write(payload[i : i + 1])
                    self.wfile.flush()
                    time.sleep(sim.drip_every_s)
            except OSError:
                pass
            self.close_connection = True
        elif fault == "reset":
            self.connection.setsockopt(
                socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00"
            )
            self.close_connection = True
