"""Every ``contact-lookup`` subcommand and its arguments, in one place (argparse).

Handlers live in ``producers.cli.handlers``; ``producers.cli.main`` dispatches to them.
"""

from __future__ import annotations

import argparse

from contact_lookup.core.resolve import STRATEGIES
from contact_lookup.model.purpose import PURPOSES, Purpose
from producers.cli import connectors as c
from producers.cli import handlers as h
from producers.demo import EXAMPLES
from worker.command import __doc__ as WORKER_DOC


def _port(text: str) -> int:
    """A TCP port for ``webhook --port``: out of range, gunicorn's bind() raised a traceback."""
    try:
        port = int(text)
    except ValueError:
        port = 0
    if not 0 < port < 65536:
        raise argparse.ArgumentTypeError(f"{text} is not a TCP port (1-65535)")
    return port


def _count(text: str) -> int:
    """A process or thread count (``webhook --workers/--threads``): at least 1; gunicorn
    would otherwise start with none, or with its own default, silently."""
    try:
        count = int(text)
    except ValueError:
        count = 0
    if count < 1:
        raise argparse.ArgumentTypeError(f"{text} is not a count of at least 1")
    return count


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
    p.add_argument("--purpose", choices=PURPOSES, default=Purpose.CALL_POP.value)
    p.add_argument("--local", action="store_true", help="run in this process, no worker")
    p.add_argument(
        "--timeout",
        type=float,
        default=30.0,
        help="seconds to wait for a worker's result (default 30)",
    )
    p.set_defaults(handler=h.cmd_lookup)

    p = sub.add_parser(
        "worker",
        help="run a Celery worker (celery -A worker worker ...)",
        description=WORKER_DOC,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "celery_args",
        nargs=argparse.REMAINDER,
        help="options passed to celery worker (e.g. -Q call_pop -c 16)",
    )
    p.set_defaults(handler=h.cmd_worker)
    p = sub.add_parser(
        "webhook",
        help="RingCentral webhook receiver (gunicorn)",
        description="Serve POST /webhook/ringcentral and GET /healthz.",
    )
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    p.add_argument("--port", type=_port, default=8080, help="port (default 8080)")
    p.add_argument("--workers", type=_count, default=2, help="gunicorn processes (default 2)")
    p.add_argument("--threads", type=_count, default=8, help="threads per process (default 8)")
    p.set_defaults(handler=h.cmd_webhook)

    p = sub.add_parser(
        "replay",
        help="feed recorded webhook bodies to the producers",
        description="One notification body per line; one JSON line out per event step.",
    )
    p.add_argument("events", metavar="EVENTS.jsonl", help="file of notification bodies, or -")
    p.add_argument("--wait", action="store_true", help="wait for and print each job's result")
    p.add_argument(
        "--timeout",
        type=float,
        default=30.0,
        help="seconds to wait for one result with --wait (default 30)",
    )
    p.add_argument(
        "--fresh",
        action="store_true",
        help="first forget every delivery/session/once marker (demos; never on a live system)",
    )
    p.add_argument(
        "--recorded",
        action="store_true",
        help="a recorded stream: judge event age (EVENT_MAX_AGE) by the newest eventTime read "
        "so far, not by the clock (demos, fixtures); without it a replay of yesterday is stale",
    )
    p.set_defaults(handler=h.cmd_replay)

    p = sub.add_parser(
        "relookup",
        help="look up a batch of numbers on the relookup queue",
        description="One number per line, or a CSV/TSV export (UTF-8 with or without BOM, "
        "UTF-16, comma/semicolon/tab) with a phone number column.",
    )
    p.add_argument(
        "numbers", metavar="NUMBERS", nargs="?", help="numbers file (.txt or .csv), or -"
    )
    p.add_argument(
        "--column",
        metavar="NAME",
        default=None,
        help="header of the column holding the numbers (default: phoneNumber, Phone, "
        "phone number, Telephone, Number, Mobile...; case and spaces ignored)",
    )
    p.add_argument("--connection", help="connection name from the config file (required)")
    p.add_argument("--refresh", action="store_true", help="bypass the cache")
    p.add_argument(
        "--out",
        metavar="RESULTS.jsonl",
        default=None,
        help="append results here (and resume from it); default stdout",
    )
    p.add_argument("--window", type=int, default=200, help="jobs outstanding at most (200)")
    p.add_argument(
        "--timeout",
        type=float,
        default=300.0,
        help="stop when no job finished or changed state for this many seconds (default 300)",
    )
    p.add_argument(
        "--cancel",
        metavar="RESULTS.jsonl",
        default=None,
        help="stop the batch writing this --out file (run elsewhere) and revoke its queued jobs",
    )
    p.set_defaults(handler=h.cmd_relookup)

    p = sub.add_parser("watch", help="print call pops as they are published")
    p.add_argument(
        "--extension", metavar="ID", default=None, help="only this RingCentral extension id"
    )
    p.add_argument("--count", type=int, default=None, help="stop after this many call pops")
    p.set_defaults(handler=h.cmd_watch)
    p = sub.add_parser(
        "check",
        help="check the environment, connections, secrets, Redis, broker and each CRM",
        description="One line per item; exit 1 when any item fails (producers/check.py).",
    )
    p.set_defaults(handler=h.cmd_check)

    p = sub.add_parser(
        "connectors",
        help="list the registered connectors, or try a connection against its CRM",
        description=c.__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    csub = p.add_subparsers(dest="connectors_command", required=True)
    q = csub.add_parser("list", help="every connector: crm name, source, rate limit, options")
    q.add_argument("--json", action="store_true", help="one JSON object per line")
    q.set_defaults(handler=c.cmd_list)
    q = csub.add_parser(
        "try",
        help="one lookup straight against the CRM: requests (secrets masked), answers, contacts",
    )
    q.add_argument("connection", help="connection name from the config file")
    q.add_argument("number", help="phone number (E.164 or national)")
    q.add_argument("--formats", default=None, help="overridingFormat, comma separated")
    q.set_defaults(handler=c.cmd_try)

    _auth(sub)
    p = sub.add_parser("demo", help="run the main job end to end on the examples")
    p.add_argument(
        "--events",
        default=str(EXAMPLES / "events.jsonl"),
        help="recorded RingCentral notifications to replay",
    )
    p.set_defaults(handler=h.cmd_demo)
    return parser


def _auth(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """``contact-lookup auth ...``: the OAuth token store (README "CRM authorisation")."""
    auth = sub.add_parser("auth", help="connect, seed, inspect or forget a CRM's OAuth tokens")
    cmds = auth.add_subparsers(dest="auth_command", required=True)

    p = cmds.add_parser("connect", help="authorization-code flow: authorize in a browser")
    p.add_argument("connection", metavar="NAME")
    # One or the other: --listen's redirect URI is its own address (argparse refuses both).
    where = p.add_mutually_exclusive_group()
    where.add_argument(
        "--listen",
        metavar="HOST:PORT",
        default=None,
        help="receive the redirect on http://HOST:PORT/callback (the redirect URI registered "
        "with the vendor); without it, paste the redirect URL on stdin",
    )
    where.add_argument(
        "--redirect-uri",
        default=None,
        help="the registered redirect URI (stdin mode; not with --listen, whose redirect URI "
        "is http://HOST:PORT/callback)",
    )
    p.add_argument(
        "--extension", metavar="ID", default=None, help="tokens of this extension's user"
    )
    p.add_argument("--timeout", type=float, default=300.0, help="seconds to wait (default 300)")
    p.set_defaults(handler=h.cmd_auth_connect)

    p = cmds.add_parser("seed", help="store tokens obtained elsewhere (CI, App Connect)")
    p.add_argument("connection", metavar="NAME")
    p.add_argument("--refresh-token-env", metavar="VAR", required=True)
    p.add_argument("--access-token-env", metavar="VAR", default=None)
    p.add_argument("--expires-in", metavar="SECONDS", type=float, default=None)
    p.add_argument(
        "--extension", metavar="ID", default=None, help="tokens of this extension's user"
    )
    p.set_defaults(handler=h.cmd_auth_seed)

    p = cmds.add_parser("status", help="one JSON line per connection; never a token")
    p.add_argument("connection", metavar="NAME", nargs="?", default=None)
    p.set_defaults(handler=h.cmd_auth_status)

    p = cmds.add_parser("revoke", help="forget a connection's stored tokens")
    p.add_argument("connection", metavar="NAME")
    p.add_argument("--extension", metavar="ID", default=None)
    p.set_defaults(handler=h.cmd_auth_revoke)

    p = cmds.add_parser("rotate-key", help="re-encrypt stored tokens with the first key")
    p.set_defaults(handler=h.cmd_auth_rotate_key)
