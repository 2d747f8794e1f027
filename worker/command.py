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
    """Start a worker; every option is Celery's own (``contact-lookup worker --help``)."""
    from worker import app

    app.worker_main(worker_argv(celery_args))
    return 0
