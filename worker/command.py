"""``contact-lookup worker [celery worker options]``: the same as ``celery -A worker worker``.

Recommended pools (CRM calls are I/O-bound; threads need no monkey-patching):
- call pops:  ``contact-lookup worker -Q call_pop --pool threads -c 16``
- logging:    ``contact-lookup worker -Q call_log,message_log,relookup --pool threads -c 8``
"""

from __future__ import annotations

DEFAULTS = [
    "--pool",
    "threads",
    "--concurrency",
    "8",
    "-Q",
    "call_pop,call_log,message_log,relookup",
]


def worker_argv(extra: list[str]) -> list[str]:
    """Celery's argv, with our defaults for any option the user did not give."""
    argv = ["worker", "-E", "--loglevel", "INFO"]
    given = set(extra)
    for flag, value in zip(DEFAULTS[::2], DEFAULTS[1::2], strict=True):
        aliases = {
            "--pool": {"--pool", "-P"},
            "--concurrency": {"--concurrency", "-c"},
            "-Q": {"-Q", "--queues"},
        }[flag]
        if not (aliases & given) and not any(
            a.startswith(tuple(f"{x}=" for x in aliases)) for a in extra
        ):
            argv += [flag, value]
    return argv + extra


def run(celery_args: list[str]) -> int:
    """Start a worker; every option is Celery's own (``contact-lookup worker --help``).

    The environment and the connections file are checked first (every connector's options
    included), so a bad value stops start-up with one line, not the first lookup.
    """
    from contact_lookup.compose import load_checked_config
    from contact_lookup.model.errors import ConfigError
    from worker import app

    try:
        load_checked_config(app.settings.config_path)
    except ConfigError as exc:
        raise SystemExit(f"contact-lookup: {exc}") from None

    app.worker_main(worker_argv(celery_args))
    return 0
