"""``contact-lookup worker [celery worker options]``: the same as ``celery -A worker worker``.

Recommended pools (CRM calls are I/O-bound; threads need no monkey-patching):
- call pops:  ``contact-lookup worker -Q call_pop --pool threads -c 16``
- logging:    ``contact-lookup worker -Q call_log,message_log,relookup --pool threads -c 8``
"""

from __future__ import annotations

import argparse
from typing import Any

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


def cmd_worker(args: argparse.Namespace) -> int:
    return run(args.celery_args)


def register(sub: Any) -> None:
    p = sub.add_parser(
        "worker",
        help="run a Celery worker (celery -A worker worker ...)",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "celery_args",
        nargs=argparse.REMAINDER,
        help="options passed to celery worker (e.g. -Q call_pop -c 16)",
    )
    p.set_defaults(handler=cmd_worker)
