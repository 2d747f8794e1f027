"""What each ``contact-lookup`` subcommand does: one handler per subcommand.

A handler takes the parsed arguments, builds what it needs from the environment
(``Settings.from_env``) and returns the exit status: 0 success, 1 a failed result or an
unreachable service, 2 a usage or configuration error (raised as ``UsageError`` or
``ConfigError``; ``producers.cli.main`` prints it as one line).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
from pathlib import Path
from typing import Any

import redis

from contact_lookup.core.request import LookupRequest
from contact_lookup.model.errors import ConfigError
from contact_lookup.model.redaction import redact_url
from contact_lookup.redis_urls import redis_client
from contact_lookup.settings import Settings
from producers.cli.errors import UsageError


def _query(args: argparse.Namespace) -> LookupRequest:
    return LookupRequest(
        phone_number=args.phone,
        purpose=args.purpose,
        overriding_format=args.formats,
        is_extension=args.extension,
        force_refresh=args.refresh,
        debug=args.debug,
        resolve=args.resolve,
    )


def _unreachable(exc: redis.RedisError) -> str:
    """'Redis is unreachable (ConnectionError: Error 111 connecting to HOST:PORT. ...)':
    redis-py's text names the host and port, never the password; redacted all the same."""
    from contact_lookup.model.redaction import PROCESS

    detail = " ".join(str(exc).split())
    return PROCESS(f"Redis is unreachable ({type(exc).__name__}: {detail})")


def cmd_lookup(args: argparse.Namespace) -> int:
    from contact_lookup.compose import Runtime

    if not args.timeout > 0:  # NaN too: the wait would blame the workers for it
        raise UsageError("--timeout must be a number of seconds above 0")
    runtime = Runtime(Settings.from_env())
    conn = runtime.config.connection(args.connection)  # unknown connection: exit 2
    query = _query(args)
    try:
        if args.local:
            # Only this process needs the secret; a remote lookup's worker reads its own.
            runtime.connectors.check(conn)
            result = runtime.service.find_contact(args.connection, query)
        else:
            from producers.remote import lookup_remote

            result = lookup_remote(runtime.settings, args.connection, query, args.timeout)
    except redis.RedisError as exc:  # the cache, state or result backend Redis: one line
        print(f"contact-lookup: lookup: {_unreachable(exc)}", file=sys.stderr)
        return 1
    print(json.dumps(result, indent=2))
    return 0 if result.get("successful") else 1


def cmd_webhook(args: argparse.Namespace) -> int:
    from contact_lookup.compose import Runtime
    from contact_lookup.preflight import webhook_token_problem
    from producers.webhook import serve

    settings = Settings.from_env()
    Runtime(settings).config  # noqa: B018  (a bad connections file: exit 2 before forking)
    problem = webhook_token_problem(settings.rc_verification_token)
    if problem:  # exit 2 naming the variable, before forking
        raise ConfigError(problem)
    serve(args.host, args.port, workers=args.workers, threads=args.threads)
    return 0


def cmd_replay(args: argparse.Namespace) -> int:
    from producers.pipeline import build_pipeline
    from producers.replay import Replay, ReplayStopped

    if args.events != "-" and not Path(args.events).is_file():
        raise UsageError(f"no such file: {args.events}")
    producer = build_pipeline(Settings.from_env())
    producer.recorded = bool(args.recorded)
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
    from contact_lookup.compose import Runtime
    from contact_lookup.core.ratelimit import limit_for
    from contact_lookup.model.errors import InvalidInput
    from producers import relookup
    from tasks.celery_app import create_app

    if args.cancel is not None:
        if args.numbers is not None:
            raise UsageError("--cancel takes only the --out file of the batch to stop")
        app = create_app(Settings.from_env())
        try:
            revoked = relookup.cancel(app, args.cancel)
        except redis.RedisError as exc:
            print(
                f"contact-lookup: relookup: Redis is unreachable ({type(exc).__name__})",
                file=sys.stderr,
            )
            return 1
        finally:
            app.close()
        if revoked is None:
            print(
                f"relookup: nothing to cancel: no batch is writing {args.cancel} (none running, "
                "no queued job of one)",
                file=sys.stderr,
            )
            return 1
        print(
            f"relookup: cancelled the batch writing {args.cancel}; {revoked} queued jobs revoked",
            file=sys.stderr,
        )
        return 0
    if args.numbers is None or not args.connection:
        raise UsageError("relookup needs NUMBERS and --connection (or --cancel RESULTS.jsonl)")
    if args.numbers != "-" and not Path(args.numbers).is_file():
        raise UsageError(f"no such file: {args.numbers}")
    if args.window < 1:
        raise UsageError("--window must be at least 1")
    runtime = Runtime(Settings.from_env())
    app = create_app(runtime.settings)

    def budget_of(terms: int) -> relookup.Budget:
        conn = runtime.config.connection(args.connection)
        cls = runtime.connectors.connector_class(conn)
        return relookup.Budget(
            limit_for(conn, cls.default_rate_limit), terms * cls.requests_per_query
        )

    argv = ["relookup", args.numbers, "--connection", args.connection]
    if args.out:
        argv += ["--out", args.out]
    if args.refresh:
        argv.append("--refresh")
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
            budget_of=budget_of,
            argv=argv,
            column=args.column,
        )
    except InvalidInput as exc:  # e.g. a CSV without a phoneNumber column
        raise UsageError(exc.user_message()) from None
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
        raise UsageError("--extension must be a RingCentral extension id (digits)")
    settings = Settings.from_env()
    client = redis_client(settings.state_url)
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


def cmd_demo(args: argparse.Namespace) -> int:
    from contact_lookup.model.purpose import PURPOSES
    from producers.demo import EXAMPLES, replay_events, start_worker, tour, wait_for_worker
    from tasks.celery_app import create_app

    if not os.environ.get("CONTACT_LOOKUP_CONFIG") and not Path("contact-lookup.toml").exists():
        os.environ["CONTACT_LOOKUP_CONFIG"] = str(EXAMPLES / "contact-lookup.toml")
    settings = Settings.from_env()
    print(
        f"contact-lookup demo: Redis {redact_url(settings.redis_url)}, "
        f"connections {settings.config_path}"
    )
    app = create_app(settings)
    proc = start_worker(settings)
    try:
        wait_for_worker(app, proc)
        print("worker up: queues " + ", ".join(PURPOSES))
        ok = tour(app)
        ok &= replay_events(settings, Path(args.events))
    finally:
        proc.terminate()
        proc.wait(20)
        app.close()
    print("\ndemo " + ("finished: every step behaved as expected" if ok else "FAILED"))
    return 0 if ok else 1


def cmd_worker(args: argparse.Namespace) -> int:
    from worker.command import run

    return run(args.celery_args)


def cmd_check(args: argparse.Namespace) -> int:
    from producers.check import run

    return run(sys.stdout)


# ----- contact-lookup auth ...: logic in contact_lookup.auth.flows ---------------------------
def _crm_errors(handler: Any) -> Any:
    """A CRM or token-endpoint failure is one line on stderr and exit 1, never a traceback."""

    def run(args: argparse.Namespace) -> int:
        from contact_lookup.model.errors import CRMError

        try:
            code: int = handler(args)
            return code
        except CRMError as exc:
            print(f"contact-lookup: {exc.user_message()}", file=sys.stderr)
            return 1

    return run


def _auth_runtime() -> Any:
    from contact_lookup.compose import Runtime

    return Runtime(Settings.from_env())


def _env_value(var: str | None) -> str | None:
    if var is None:
        return None
    value = os.environ.get(var, "")
    if not value:
        raise UsageError(f"environment variable {var} is not set")
    return value


@_crm_errors
def cmd_auth_seed(args: argparse.Namespace) -> int:
    from contact_lookup.auth import flows

    runtime = _auth_runtime()
    status = flows.seed(
        runtime.tokens,
        runtime.config.connection(args.connection),
        _env_value(args.refresh_token_env) or "",
        access_token=_env_value(args.access_token_env),
        expires_in=args.expires_in,
        user=args.extension,
    )
    _say_who(status)
    print(json.dumps(status))
    return 0


def _say_who(status: dict[str, Any]) -> None:
    """``Connected NAME as USER`` on stderr (the JSON on stdout has it as ``connectedAs``);
    never a token."""
    from contact_lookup.auth import identity

    who = status.get("connectedAs")
    if who:
        line = f"Connected {status['connection']} as {identity.describe(who)}."
    else:
        line = (
            f"Connected {status['connection']}; tokens stored, but who is connected "
            f"{status.get('identityError') or 'could not be read'}."
        )
    print(line, file=sys.stderr, flush=True)


def cmd_auth_status(args: argparse.Namespace) -> int:
    from contact_lookup.auth import flows

    runtime = _auth_runtime()
    for line in flows.status(lambda: runtime.tokens, runtime.config, args.connection):
        print(json.dumps(line), flush=True)
    return 0


def cmd_auth_revoke(args: argparse.Namespace) -> int:
    from contact_lookup.auth import flows

    runtime = _auth_runtime()
    forgot = flows.revoke(
        runtime.tokens, runtime.config.connection(args.connection), args.extension
    )
    print(json.dumps({"connection": args.connection, "forgotten": forgot}))
    return 0


def cmd_auth_rotate_key(args: argparse.Namespace) -> int:
    from contact_lookup.auth import flows

    print(json.dumps({"reencrypted": flows.rotate_key(_auth_runtime().tokens)}))
    return 0


@_crm_errors
def cmd_auth_connect(args: argparse.Namespace) -> int:
    from contact_lookup.auth import flows

    runtime = _auth_runtime()
    connection = runtime.config.connection(args.connection)

    def show(url: str) -> None:
        print(f"Open this URL to authorise {connection.name}:\n{url}", file=sys.stderr, flush=True)

    if args.listen:
        host, _, port = args.listen.rpartition(":")
        if not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise UsageError("--listen must be HOST:PORT, e.g. 127.0.0.1:8765")
        redirect_uri = f"http://{host}:{port}/callback"

        def get_redirect(url: str, _redirect: str) -> str:
            try:
                return flows.listen_for_redirect(host, int(port), args.timeout, lambda _: show(url))
            except OSError as exc:  # in use, or not an address of this machine
                why = exc.strerror or type(exc).__name__
                raise UsageError(f"--listen {args.listen}: cannot listen there ({why})") from None
    else:
        redirect_uri = args.redirect_uri

        def get_redirect(url: str, _redirect: str) -> str:
            show(url)
            print("Paste the URL the browser was redirected to:", file=sys.stderr, flush=True)
            return sys.stdin.readline()

    status = flows.connect(
        runtime.tokens,
        connection,
        redirect_uri=redirect_uri,
        get_redirect=get_redirect,
        user=args.extension,
    )
    _say_who(status)
    print(json.dumps(status))
    return 0
