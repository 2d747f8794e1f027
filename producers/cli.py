"""The ``contact-lookup`` command (INTERFACE.md section 4).

Exit status: 0 when the printed result is successful, 1 when it is not, 2 for a usage or
configuration error (one line on stderr, no traceback).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Sequence

from lookup.errors import ConfigError
from lookup.resolve import STRATEGIES
from lookup.service import PURPOSES, Query
from lookup.settings import Settings

Handler = Callable[[argparse.Namespace], int]


class UsageError(Exception):
    """A problem with how the command was called: exit 2."""


def _query(args: argparse.Namespace) -> Query:
    return Query(
        phone_number=args.phone,
        purpose=args.purpose,
        overriding_format=args.formats,
        is_extension=args.extension,
        force_refresh=args.refresh,
        debug=args.debug,
        resolve=args.resolve,
    )


def cmd_lookup(args: argparse.Namespace) -> int:
    from lookup.app import Runtime

    runtime = Runtime(Settings.from_env())
    conn = runtime.config.connection(args.connection)  # unknown connection: exit 2
    query = _query(args)
    if args.local:
        # Only this process needs the secret; a remote lookup's worker reads its own.
        runtime.connectors.check(conn)
        result = runtime.service.find_contact(args.connection, query)
    else:
        from producers.remote import lookup_remote

        result = lookup_remote(runtime.settings, args.connection, query, args.timeout)
    print(json.dumps(result, indent=2))
    return 0 if result.get("successful") else 1


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="contact-lookup", description="Find the CRM contacts behind a phone number."
    )
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("lookup", help="look up one number and print the result as JSON")
    p.add_argument("phone", help="phone number (E.164 or national) or extension digits")
    p.add_argument("--connection", required=True, help="connection name from the config file")
    p.add_argument("--formats", default=None, help="overridingFormat, comma separated")
    p.add_argument("--extension", action="store_true", help="an internal extension number")
    p.add_argument("--refresh", action="store_true", help="bypass the cache")
    p.add_argument("--debug", action="store_true", help="include a redacted debugTrace")
    p.add_argument("--resolve", choices=STRATEGIES, default=None)
    p.add_argument("--purpose", choices=PURPOSES, default="call_pop")
    p.add_argument("--local", action="store_true", help="run in this process, no worker")
    p.add_argument(
        "--timeout",
        type=float,
        default=30.0,
        help="seconds to wait for a worker's result (default 30)",
    )
    p.set_defaults(handler=cmd_lookup)

    # Subcommands live with the code they run.
    from producers import commands, demo
    from worker import command

    for module in (command, commands, demo):
        module.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["worker"]:
        # Everything after "worker" is Celery's: argparse would reject its options.
        from worker.command import run

        return run(argv[1:])
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        code: int = args.handler(args)
        return code
    except (ConfigError, UsageError) as exc:
        print(f"contact-lookup: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
