"""The RingCentral webhook receiver (docs/interface.md section 7): Flask, served by gunicorn.

``POST /webhook/ringcentral``
  - ``Validation-Token`` header (the subscription handshake): 200, the header echoed,
    ``Content-Type: application/json``, body ``{}``; a token over 512 characters gets 400, so
    the answer, headers included, stays under RingCentral's 1 KiB.
  - ``Verification-Token`` compared in constant time with ``RC_VERIFICATION_TOKEN`` where
    that is set: 401 when missing or wrong.
  - a body over ``MAX_BODY_BYTES``: 413; not a JSON object: 400.
  - otherwise the producer runs (Redis and the broker only, no CRM work): 200 with the
    actions taken, unknown events included (skipped and logged); 503 when the broker or Redis
    is unreachable, having released this delivery's dedupe keys, so RingCentral's redelivery
    is processed. 200 is only ever sent after every job of the delivery was enqueued.
``GET /healthz``: 200 ``{"redis": "ok", "broker": "ok"}``, else 503.

Logs carry the delivery uuid and the actions, never a body, a number or a token.
"""

from __future__ import annotations

import hmac
import json
import logging
from collections.abc import Callable
from typing import Any

from flask import Flask, Response, request
from werkzeug.exceptions import RequestEntityTooLarge

from contact_lookup.settings import Settings
from producers.pipeline import EventPipeline, PipelineUnavailable

log = logging.getLogger("contact_lookup.webhook")

MAX_BODY_BYTES = 256 * 1024  # a telephony notification is a few KiB; a large group SMS, tens
MAX_VALIDATION_TOKEN = 512  # keeps the handshake answer well under RingCentral's 1 KiB cap


def _json(data: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(
        json.dumps(data, separators=(",", ":")),
        status=status,
        mimetype="application/json",
        headers=headers,
    )


def create_webhook_app(producer: EventPipeline, settings: Settings) -> Flask:
    app = Flask("contact_lookup.webhook")
    app.config["MAX_CONTENT_LENGTH"] = MAX_BODY_BYTES
    token = settings.rc_verification_token.encode() if settings.rc_verification_token else None

    @app.errorhandler(RequestEntityTooLarge)
    def too_large(_exc: Exception) -> Response:
        return _json({"error": f"body over {MAX_BODY_BYTES} bytes"}, 413)

    @app.post("/webhook/ringcentral")
    def ringcentral() -> Response:
        validation = request.headers.get("Validation-Token")
        if validation is not None:
            if not validation or len(validation) > MAX_VALIDATION_TOKEN:
                return _json({"error": "bad Validation-Token"}, 400)
            log.info("ringcentral: subscription handshake answered")
            return _json({}, 200, {"Validation-Token": validation})
        if token is not None:
            given = request.headers.get("Verification-Token", "").encode()
            if not hmac.compare_digest(given, token):
                log.warning(
                    "ringcentral: notification refused (missing or wrong Verification-Token)"
                )
                return _json({"error": "missing or wrong Verification-Token"}, 401)
        raw = request.get_data(cache=False)  # RequestEntityTooLarge past MAX_CONTENT_LENGTH
        try:
            notification = json.loads(raw)
        except (ValueError, UnicodeDecodeError):
            log.warning("ringcentral: malformed JSON body refused")
            return _json({"error": "the body is not valid JSON"}, 400)
        if not isinstance(notification, dict):
            log.warning("ringcentral: non-object JSON body refused")
            return _json({"error": "a notification is a JSON object"}, 400)
        uuid = notification.get("uuid") if isinstance(notification.get("uuid"), str) else None
        logged = _loggable(uuid)
        try:
            outcomes = producer.handle(notification)
        except PipelineUnavailable as exc:
            log.error("ringcentral %s: not accepted, %s", logged, exc)
            return _json(
                {"error": "temporarily unable to queue the event"}, 503, {"Retry-After": "5"}
            )
        actions = [o.action for o in outcomes]
        log.info("ringcentral %s: %s", logged, ",".join(actions))
        return _json({"uuid": uuid, "actions": actions})

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
    """Run gunicorn (threads worker class ``gthread``) until it is stopped."""
    options = {
        "bind": f"{host}:{port}",
        "worker_class": "gthread",
        "workers": workers,
        "threads": threads,
        "timeout": 30,
        "graceful_timeout": 10,
        "keepalive": 5,
        "accesslog": None,
        "errorlog": "-",
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
