"""``celery -A worker worker``: the Celery app built from the environment (docs/interface.md s.8).

The app is built on first access to ``worker.app`` (Celery's ``-A worker`` looks it up by
that name), so importing a submodule such as ``worker.command`` reads no environment.
"""

from __future__ import annotations

import contextlib
from functools import cache
from typing import Any

from contact_lookup.compose import load_checked_config
from contact_lookup.logs import configure_logging
from contact_lookup.model.errors import ConfigError
from contact_lookup.settings import Settings
from tasks.celery_app import ContactLookupCelery, create_app


@cache
def _app() -> ContactLookupCelery:
    try:
        settings = Settings.from_env()
    except ConfigError as exc:  # one line naming the variable, not a traceback
        raise SystemExit(f"contact-lookup: {exc}") from None
    configure_logging(settings.log_format)
    # Registers the connections file's secrets with the log redactor before any task runs; a
    # bad file is reported by the first lookup as a failed result naming the problem.
    with contextlib.suppress(ConfigError):
        load_checked_config(settings.config_path)
    app = create_app(settings)
    app.set_current()
    import tasks.find_contact  # noqa: F401  (registers the task on this app)

    return app


def __getattr__(name: str) -> Any:
    if name == "app":
        return _app()
    raise AttributeError(f"module 'worker' has no attribute {name!r}")


__all__ = ["app"]
