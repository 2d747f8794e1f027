"""``celery -A worker worker``: the Celery app built from the environment (INTERFACE.md s.8)."""

from __future__ import annotations

from lookup.errors import ConfigError
from lookup.settings import Settings
from worker.app import create_app
from worker.logs import configure_logging

try:
    _settings = Settings.from_env()
except ConfigError as exc:  # one line naming the variable, not a traceback
    raise SystemExit(f"contact-lookup: {exc}") from None

configure_logging(_settings.log_format)
app = create_app(_settings)
app.set_current()
import tasks.find_contact  # noqa: E402,F401  (registers the task on this app)

__all__ = ["app"]
