"""The ``contact-lookup`` command (docs/interface.md, "Command line").

Exit status: 0 when the printed result is successful, 1 when it is not, 2 for a usage or
configuration error (one line on stderr, no traceback).

The tree: ``parser.py`` declares every subcommand, ``handlers.py`` runs them, ``errors.py``
holds ``UsageError``.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence

from contact_lookup.model.errors import ConfigError
from producers.cli.errors import UsageError

__all__ = ["UsageError", "main"]


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["webhook"] or (
        argv[:1] == ["worker"] and any(a.startswith("--metrics-port") for a in argv)
    ):
        # Before anything imports prometheus_client (importing the worker package does):
        # every process of a gunicorn or a prefork pool then counts into one /metrics.
        from contact_lookup.metrics_env import use_multiprocess_dir

        use_multiprocess_dir()
    if argv[:1] == ["worker"]:
        # Everything after "worker" is Celery's: argparse would reject its options.
        from worker.command import run

        try:
            return run(argv[1:])
        except ConfigError as exc:
            print(f"contact-lookup: {exc}", file=sys.stderr)
            return 2
    from producers.cli.parser import build_parser

    parser = build_parser()
    args = parser.parse_args(argv)
    from tasks.events import name_producer

    name_producer(argv[0] if argv else "cli")  # Flower sees webhook@host, not gen<PID>@host
    try:
        code: int = args.handler(args)
        return code
    except (ConfigError, UsageError) as exc:
        print(f"contact-lookup: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # `contact-lookup … | head`: the reader left; no traceback
        # Python's advice (docs, "signal", note on SIGPIPE): stdout to devnull, so the
        # interpreter's final flush cannot raise again.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 1


if __name__ == "__main__":
    sys.exit(main())
