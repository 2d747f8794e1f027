"""The RingCentral webhook receiver (docs/interface.md section 7): Flask, served by gunicorn.

``POST /webhook/ringcentral``
  - ``Validation-Token`` header (the subscription handshake): 200, the header echoed,
    ``Content-Type: application/json``, body ``{}``; a token over 512 characters gets 400, so
    the answer, headers included, stays under RingCentral's 1 KiB.
  - ``Verification-Token`` compared in constant time with ``RC_VERIFICATION_TOKEN`` where
    that is set: 401 when missing or wrong.
  - a body over ``MAX_BODY_BYTES``: 413; not a JSON object: 400; JSON nested deeper than
    ``MAX_JSON_DEPTH`` (RingCentral's notifications nest 5 levels): 400, checked before it is
    parsed, so a body 60,000 levels deep costs one linear scan and no traceback.
  - otherwise the producer runs (Redis and the broker only, no CRM work): 200 with the
    actions taken, unknown events included (skipped and logged); 503 when the broker or Redis
    is unreachable, having released this delivery's dedupe keys, so RingCentral's redelivery
    is processed. 200 is only ever sent after every job of the delivery was enqueued.
``GET /healthz``: 200 ``{"redis": "ok", "broker": "ok"}``, else 503.
``GET /metrics``: the domain metrics (contact_lookup.metrics) of every gunicorn process, in
the Prometheus text format; behind HTTP basic auth when ``METRICS_BASIC_AUTH=user:password``
is set.

Logs carry the delivery uuid, the actions and each skip's reason, never a body, a number or
a token. Every request outcome is counted in ``contact_lookup_webhook_deliveries_total``.
"""

from __future__ import annotations

import base64
import hmac
import json
import logging
import re
import time
from collections.abc import Callable
from typing import Any

from flask import Flask, Response, request
from werkzeug.exceptions import RequestEntityTooLarge

from contact_lookup import metrics
from contact_lookup.model.errors import ConfigError
from contact_lookup.preflight import webhook_token_problem
from contact_lookup.settings import Settings
from producers import flower_events
from producers.pipeline import EventPipeline, PipelineUnavailable

log = logging.getLogger("contact_lookup.webhook")

MAX_BODY_BYTES = 256 * 1024  # a telephony notification is a few KiB; a large group SMS, tens
MAX_VALIDATION_TOKEN = 512  # keeps the handshake answer well under RingCentral's 1 KiB cap
# RingCentral's notification bodies nest at most 5 levels (tests/fixtures/ringcentral and
# its SOURCES.md); 32 leaves room for new fields and keeps json.loads far from Python's
# recursion limit.
MAX_JSON_DEPTH = 32

# A JSON string, or an unterminated one up to the end: always matches, never backtracks
# (possessive), so the scan stays linear whatever the body holds.
_JSON_STRING = re.compile(rb'"(?:[^"\\]|\\.|\\\Z)*+(?:"|\Z)')
_NOT_BRACKETS = bytes(b for b in range(256) if b not in b"[]{}")
_OPENERS = (ord("["), ord("{"))


def too_deep(raw: bytes, limit: int = MAX_JSON_DEPTH) -> bool:
    """Whether the JSON text ``raw`` nests objects/arrays deeper than ``limit``: the brackets
    outside strings, counted in one linear pass (malformed text is left to the parser)."""
    brackets = _JSON_STRING.sub(b"", raw).translate(None, _NOT_BRACKETS)
    if brackets.count(b"[") + brackets.count(b"{") <= limit:
        return False
    depth = 0
    for byte in brackets:
        if byte in _OPENERS:
            depth += 1
            if depth > limit:
                return True
        else:
            depth -= 1
    return False


def _basic_auth(credentials: str | None) -> bytes | None:
    if not credentials:
        return None
    if ":" not in credentials:
        raise ConfigError("METRICS_BASIC_AUTH must be user:password")
    return b"Basic " + base64.b64encode(credentials.encode())


def _json(data: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(
        json.dumps(data, separators=(",", ":")),
        status=status,
        mimetype="application/json",
        headers=headers,
    )


def create_webhook_app(producer: EventPipeline, settings: Settings) -> Flask:
    """The Flask app; ConfigError (naming the variable) for a secret unfit for a header."""
    app = Flask("contact_lookup.webhook")
    app.config["MAX_CONTENT_LENGTH"] = MAX_BODY_BYTES
    problem = webhook_token_problem(settings.rc_verification_token)  # the rule `check` shares
    if problem:
        raise ConfigError(problem)
    token = settings.rc_verification_token.encode() if settings.rc_verification_token else None
    metrics_auth = _basic_auth(settings.metrics_basic_auth)

    def refused(code: str, error: str, status: int) -> Response:
        metrics.count_delivery("refused", code)
        log.warning("ringcentral: refused (%s)", code, extra={"action": "refused", "reason": code})
        return _json({"error": error}, status)

    @app.errorhandler(RequestEntityTooLarge)
    def too_large(_exc: Exception) -> Response:
        return refused("too_large", f"body over {MAX_BODY_BYTES} bytes", 413)

    @app.post("/webhook/ringcentral")
    def ringcentral() -> Response:
        validation = request.headers.get("Validation-Token")
        if validation is not None:
            if not validation or len(validation) > MAX_VALIDATION_TOKEN:
                return _json({"error": "bad Validation-Token"}, 400)
            log.info("ringcentral: subscription handshake answered")
            return _json({}, 200, {"Validation-Token": validation})
        if token is not None:
            given = request.headers.get("Verification-Token", "").encode("utf-8", "replace")
            if not hmac.compare_digest(given, token):
                return refused("unauthorized", "missing or wrong Verification-Token", 401)
        started = time.monotonic()
        raw = request.get_data(cache=False)  # RequestEntityTooLarge past MAX_CONTENT_LENGTH
        if too_deep(raw):
            return refused("too_deep", f"JSON nested deeper than {MAX_JSON_DEPTH} levels", 400)
        try:
            notification = json.loads(raw)
        except (ValueError, UnicodeDecodeError, RecursionError):
            return refused("malformed", "the body is not valid JSON", 400)
        if not isinstance(notification, dict):
            return refused("not_object", "a notification is a JSON object", 400)
        uuid = notification.get("uuid") if isinstance(notification.get("uuid"), str) else None
        logged = _loggable(uuid)
        try:
            outcomes = producer.handle(notification, started=started)
        except PipelineUnavailable as exc:
            metrics.count_delivery("refused", "unavailable")
            log.error("ringcentral %s: not accepted, %s", logged, exc)
            return _json(
                {"error": "temporarily unable to queue the event"}, 503, {"Retry-After": "5"}
            )
        flower_events.cached_pops(producer.app, outcomes, started)  # after the PUBLISH
        actions = [o.action for o in outcomes]
        for o in outcomes:
            metrics.count_delivery(o.action, o.reason)
            if o.action in ("skipped", "duplicate"):
                reason = metrics.reason_class(o.reason)
                log.info(
                    "ringcentral %s: %s (%s)",
                    logged,
                    o.action,
                    reason,
                    extra={"uuid": logged, "action": o.action, "reason": reason},
                )
        log.info(
            "ringcentral %s: %s",
            logged,
            ",".join(actions),
            extra={"uuid": logged, "actions": actions},
        )
        return _json({"uuid": uuid, "actions": actions})

    @app.get("/metrics")
    def metrics_page() -> Response:
        if metrics_auth is not None:
            given = request.headers.get("Authorization", "").encode("utf-8", "replace")
            if not hmac.compare_digest(given, metrics_auth):
                return Response(
                    "authentication required",
                    401,
                    {"WWW-Authenticate": 'Basic realm="metrics"'},
                )
        return Response(metrics.exposition(), mimetype=metrics.CONTENT_TYPE_LATEST)

    @app.get("/healthz")
    def healthz() -> Response:
        status = producer.check()
        healthy = all(v == "ok" for v in status.values())
        return _json(status, 200 if healthy else 503)

    return app


def _gunicorn_base() -> type:
    from gunicorn.app.base import BaseApplication

    class WebhookServer(BaseApplication):
        """gunicorn, configured in code; each worker process builds its own app (post-fork),
        so no Redis or broker connection is shared across processes."""

        def __init__(self, factory: Callable[[], Flask], options: dict[str, Any]) -> None:
            self.factory = factory
            self.options = options
            super().__init__()

        def load_config(self) -> None:
            for key, value in self.options.items():
                self.cfg.set(key, value)

        def load(self) -> Flask:
            return self.factory()

    return WebhookServer


def app_from_env() -> Flask:
    """The webhook app wired from the environment (what each gunicorn worker runs)."""
    from contact_lookup.logs import configure_logging
    from producers.pipeline import build_pipeline

    settings = Settings.from_env()
    configure_logging(settings.log_format)
    return create_webhook_app(build_pipeline(settings), settings)


def serve(host: str, port: int, *, workers: int = 2, threads: int = 8) -> None:
    """Run gunicorn (threads worker class ``gthread``) until it is stopped.

    Slow clients: gunicorn's gthread worker hands a connection to a thread only once data
    has arrived, and returns it to its poller after 5 s without any; ``worker_connections``
    bounds how many a process holds. A client that drips its request byte by byte still
    holds a thread, so the deployment puts a buffering reverse proxy in front
    (deploy/nginx.conf, docker-compose.yml), as gunicorn's documentation advises.
    """
    options = {
        "bind": f"{host}:{port}",
        "worker_class": "gthread",
        "workers": workers,
        "threads": threads,
        "timeout": 30,
        "graceful_timeout": 10,
        "keepalive": 5,
        "accesslog": "-",
        "errorlog": "-",
        "logger_class": "producers.gunicorn_logs.ServiceLogger",
        "worker_connections": 1000,
        "loglevel": "info",
        "proc_name": "contact-lookup-webhook",
    }
    _gunicorn_base()(app_from_env, options).run()


def _loggable(uuid: str | None) -> str:
    """The client-sent uuid as it may appear in a log line: printable, short, quoted where it
    is odd, so a newline in it cannot start a forged line (log injection)."""
    if uuid is None:
        return "-"
    if len(uuid) <= 64 and uuid.isprintable() and " " not in uuid:
        return uuid
    return repr(uuid[:64]) + ("..." if len(uuid) > 64 else "")
