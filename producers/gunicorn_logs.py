"""gunicorn's own logs in the service's format: its error log (start-up, worker boots and
exits) and an access log, both through ``contact_lookup.logs`` (JSON or text, redacted,
numbers masked), so every line a webhook process writes has one shape.

The access log gives method, path (never the query string), status and ``duration_ms``:
no client headers, no body. gunicorn documents ``logger_class`` as the way to replace its
logging (https://docs.gunicorn.org/en/stable/settings.html#logger-class).
"""

from __future__ import annotations

from typing import Any

from gunicorn.glogging import Logger

from contact_lookup.logs import make_handler
from contact_lookup.settings import Settings


class ServiceLogger(Logger):
    """gunicorn.glogging.Logger with the service's handler on both of its loggers."""

    def setup(self, cfg: Any) -> None:
        super().setup(cfg)
        log_format = Settings.from_env().log_format
        for log in (self.error_log, self.access_log):
            log.handlers[:] = [make_handler(log_format)]
            log.propagate = False

    @property
    def access_log_enabled(self) -> bool:
        return True

    def access(self, resp: Any, req: Any, environ: Any, request_time: Any) -> None:
        status = getattr(resp, "status_code", None) or str(getattr(resp, "status", "-"))[:3]
        duration_ms = round(request_time.total_seconds() * 1000, 2)
        self.access_log.info(
            "%s %s %s in %.2f ms",  # "200 12.50" would read as a phone number: masked
            req.method,
            req.path,
            status,
            duration_ms,
            extra={
                "method": req.method,
                "path": req.path,
                "status": status,
                "duration_ms": duration_ms,
            },
        )
