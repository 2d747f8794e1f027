"""The producer subcommands of ``contact-lookup``: webhook, replay, relookup, watch.

``producers.cli`` imports this module and calls ``register(subparsers)``; each handler builds
its dependencies from the environment (``Settings.from_env``) and returns the exit status.
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path
from typing import Any

import redis

from lookup.settings import Settings


def _usage_error(message: str) -> Exception:
    from producers.cli import UsageError

    return UsageError(message)


def cmd_webhook(args: argparse.Namespace) -> int:
    from lookup.app import Runtime
    from producers.webhook import serve

    settings = Settings.from_env()
    Runtime(settings).config  # noqa: B018  (a bad connections file: exit 2 before forking)
    serve(args.host, args.port, workers=args.workers, threads=args.threads)
    return 0


def cmd_replay(args: argparse.Namespace) -> int:
    from producers.pipeline import build_producer
    from producers.replay import Replay, ReplayStopped

    if args.events != "-" and not Path(args.events).is_file():
        raise _usage_error(f"no such file: {args.events}")
    producer = build_producer(Settings.from_env())
    try:
        if args.fresh:
            deleted = producer.forget_events()
            print(f"replay: forgot {deleted} producer markers", file=sys.stderr)
        replay = Replay(producer, sys.stdout, wait_s=args.timeout if args.wait else None)
        if args.events == "-":
            return replay.run(sys.stdin)
        with open(args.events, encoding="utf-8", errors="replace") as source:
            return replay.run(source)
    except ReplayStopped as exc:
        print(f"contact-lookup: replay {exc}", file=sys.stderr)
        return 1
    except redis.RedisError as exc:
        print(
            f"contact-lookup: replay: Redis is unreachable ({type(exc).__name__})", file=sys.stderr
        )
        return 1
    finally:
        producer.app.close()


def cmd_relookup(args: argparse.Namespace) -> int:
    from lookup.app import Runtime
    from lookup.errors import InvalidInput
    from producers import relookup
    from worker.celery_app import create_app

    if args.numbers != "-" and not Path(args.numbers).is_file():
        raise _usage_error(f"no such file: {args.numbers}")
    if args.window < 1:
        raise _usage_error("--window must be at least 1")
    runtime = Runtime(Settings.from_env())
    app = create_app(runtime.settings)
    try:
        return relookup.run(
            app,
            runtime.service,
            args.connection,
            args.numbers,
            args.out,
            refresh=args.refresh,
            window=args.window,
            idle_timeout_s=args.timeout,
        )
    except InvalidInput as exc:  # e.g. a CSV without a phoneNumber column
        raise _usage_error(exc.user_message()) from None
    except redis.RedisError as exc:
        print(
            f"contact-lookup: relookup: Redis is unreachable ({type(exc).__name__})",
            file=sys.stderr,
        )
        return 1
    finally:
        app.close()


def cmd_watch(args: argparse.Namespace) -> int:
    from producers.watch import watch

    if args.extension is not None and not re.fullmatch(r"\d{1,20}", args.extension):
        raise _usage_error("--extension must be a RingCentral extension id (digits)")
    settings = Settings.from_env()
    client = redis.Redis.from_url(settings.cache_url, socket_connect_timeout=5)
    try:
        watch(client, sys.stdout, extension=args.extension, count=args.count)
    except redis.RedisError as exc:
        print(
            f"contact-lookup: watch: Redis is unreachable ({type(exc).__name__})", file=sys.stderr
        )
        return 1
    finally:
        client.close()
    return 0


def register(sub: Any) -> None:
    p = sub.add_parser(
        "webhook",
        help="RingCentral webhook receiver (gunicorn)",
        description="Serve POST /webhook/ringcentral and GET /healthz.",
    )
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=8080, help="port (default 8080)")
    p.add_argument("--workers", type=int, default=2, help="gunicorn processes (default 2)")
    p.add_argument("--threads", type=int, default=8, help="threads per process (default 8)")
    p.set_defaults(handler=cmd_webhook)

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
    p.set_defaults(handler=cmd_replay)

    p = sub.add_parser(
        "relookup",
        help="look up a batch of numbers on the relookup queue",
        description="One number per line, or a CSV with a phoneNumber column.",
    )
    p.add_argument("numbers", metavar="NUMBERS", help="numbers file (.txt or .csv), or -")
    p.add_argument("--connection", required=True, help="connection name from the config file")
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
        help="stop when no result arrives for this many seconds (default 300)",
    )
    p.set_defaults(handler=cmd_relookup)

    p = sub.add_parser("watch", help="print call pops as they are published")
    p.add_argument(
        "--extension", metavar="ID", default=None, help="only this RingCentral extension id"
    )
    p.add_argument("--count", type=int, default=None, help="stop after this many call pops")
    p.set_defaults(handler=cmd_watch)
