"""``celery -A worker worker``: the Celery app built from the environment (docs/interface.md s.8).

The app is built on first access to ``worker.app`` (Celery's ``-A worker`` looks it up by
that name), so importing a submodule such as ``worker.command`` reads no environment.
"""

from __future__ import annotations

import contextlib
import os
from functools import cache
from typing import Any

from contact_lookup.compose import load_checked_config
from contact_lookup.logs import configure_logging
from contact_lookup.model.errors import ConfigError
from contact_lookup.settings import Settings
from tasks.celery_app import ContactLookupCelery, create_app, strip_celery_cli_urls


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
        load_checked_config(settings.config_path, settings)
    strip_celery_cli_urls(os.environ, settings)
    app = create_app(settings)
    app.set_current()
    from celery import signals

    signals.worker_init.connect(startup_checks, weak=False)
    signals.celeryd_init.connect(name_events, weak=False)
    if settings.log_format == "json":
        signals.celeryd_init.connect(json_only_output, weak=False)
    import tasks.find_contact  # noqa: F401  (registers the task on this app)

    return app


def __getattr__(name: str) -> Any:
    if name == "app":
        return _app()
    raise AttributeError(f"module 'worker' has no attribute {name!r}")


__all__ = ["app"]


def startup_checks(**_: object) -> None:
    """Celery ``worker_init``: the checks of ``contact-lookup check`` (worker.checks), before
    the worker consumes anything or says it is ready. Each failed item is one log line
    naming it; a fatal one (a missing or unsendable secret, a bad connections file, a Redis
    or broker that refuses our password or may evict, a CRM that rejects the credentials)
    makes the worker exit 2. An unreachable Redis, broker or CRM is a warning: Celery keeps
    reconnecting, and a CRM briefly down must not stop the other connections' call pops.
    ``STARTUP_CRM_PROBE=off`` skips the CRM probes."""
    import logging

    from worker.checks import environment, lines

    log = logging.getLogger("contact_lookup.worker")
    settings, first = environment()
    found = [first] if settings is None else list(lines(settings, probe=settings.startup_crm_probe))
    fatal = False
    for line in found:
        if line.ok:
            log.debug("start-up check %s", line.text())
        elif line.fatal:
            fatal = True
            log.error("not starting: %s: %s", line.item, line.detail)
        else:
            log.warning("starting anyway: %s: %s", line.item, line.detail)
    if fatal:
        raise SystemExit(2)


def name_events(sender: object = None, **_: object) -> None:
    """Celery ``celeryd_init`` (sender: the node name): the task-sent events of this worker's
    retries carry its node name, not ``gen<PID>@host`` (tasks.events.name_producer)."""
    from tasks.events import name_producer

    if isinstance(sender, str):
        name_producer(sender)


def json_only_output(instance: Any = None, **_: object) -> None:
    """Celery ``celeryd_init`` in ``LOG_FORMAT=json``: every line a worker writes is a JSON
    record. The text banner is left out (as ``--quiet`` does; "<name> ready." is still
    logged), and "worker: Warm shutdown (MainProcess)", which Celery prints with
    ``safe_say`` (a raw write, for gevent's sake), becomes a log record."""
    import logging

    import celery.apps.worker as celery_worker

    if instance is not None:
        instance.quiet = True

    def say(msg: str, f: object = None) -> None:
        logging.getLogger("celery.apps.worker").warning(msg)

    celery_worker.safe_say = say
