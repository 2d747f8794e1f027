"""``contact-lookup worker [celery worker options]``: the same as ``celery -A worker worker``.

Recommended pools (CRM calls are I/O-bound; threads need no monkey-patching):
- call pops:  ``contact-lookup worker -Q call_pop --pool threads -c 16``
- logging:    ``contact-lookup worker -Q call_log,message_log,relookup --pool threads -c 8``

``--metrics-port [HOST:]PORT`` (ours, not Celery's): serve the domain metrics
(contact_lookup.metrics) at ``http://HOST:PORT/metrics`` (HOST default 127.0.0.1), summed
over every process of the worker (prefork children included) through prometheus_client's
multiprocess mode.
"""

from __future__ import annotations

import sys

DEFAULTS = [
    "--pool",
    "threads",
    "--concurrency",
    "8",
    "-Q",
    "call_pop,call_log,message_log,relookup",
]


HELP = f"""\
usage: contact-lookup worker [--metrics-port [HOST:]PORT] [celery worker options]

Run a Celery worker of this service (celery -A worker worker), after the start-up checks
of `contact-lookup check`: a missing or unsendable secret, a bad connections file, a Redis
that may evict or a CRM that rejects the credentials stops it (exit 2).

options of contact-lookup (not Celery's):
  --metrics-port [HOST:]PORT  serve the domain metrics at http://HOST:PORT/metrics (HOST
                              default 127.0.0.1), summed over every process of the worker

added unless given: -E --loglevel INFO {" ".join(DEFAULTS)}
settings: the environment variables of the README's configuration table (REDIS_URL,
CONTACT_LOOKUP_CONFIG, ...); none is needed for --help.

Celery's worker options (every one is accepted):
"""


def print_help() -> int:
    """``contact-lookup worker --help``: our options, then Celery's own help (from a bare app,
    so no environment is read)."""
    from celery import Celery

    print(HELP, flush=True)
    Celery("worker").worker_main(["worker", "--help"])
    return 0


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


def split_metrics_port(args: list[str]) -> tuple[tuple[str, int] | None, list[str]]:
    """(host, port) of ``--metrics-port [HOST:]PORT`` (or None) and the other arguments."""
    rest: list[str] = []
    value: str | None = None
    it = iter(args)
    for arg in it:
        if arg == "--metrics-port":
            value = next(it, "")
        elif arg.startswith("--metrics-port="):
            value = arg.split("=", 1)[1]
        else:
            rest.append(arg)
    if value is None:
        return None, rest
    host, _, port = value.rpartition(":")
    if not port.isdigit() or not 0 < int(port) < 65536:
        from contact_lookup.model.errors import ConfigError

        raise ConfigError(f"--metrics-port {value!r} must be [HOST:]PORT")
    return (host or "127.0.0.1", int(port)), rest


def run(celery_args: list[str]) -> int:
    """Start a worker; every option is Celery's own (``contact-lookup worker --help``) but
    ``--metrics-port``.

    The environment and the connections file are checked first (every connector's options
    included), so a bad value stops start-up with one line, not the first lookup.
    """
    if {"-h", "--help"} & set(celery_args):
        return print_help()
    from contact_lookup.compose import load_checked_config
    from contact_lookup.metrics_env import use_multiprocess_dir
    from contact_lookup.model.errors import ConfigError

    bind, celery_args = split_metrics_port(celery_args)
    if bind is not None:
        use_multiprocess_dir()
    from worker import app

    try:
        load_checked_config(app.settings.config_path, app.settings)
    except ConfigError as exc:
        raise SystemExit(f"contact-lookup: {exc}") from None
    if bind is not None:
        from prometheus_client import start_http_server

        from contact_lookup import metrics

        start_http_server(bind[1], addr=bind[0], registry=metrics.registry())
    import click

    try:
        app.worker_main(worker_argv(celery_args))
    except click.ClickException as exc:  # Celery parses with click's standalone mode off
        print(f"contact-lookup worker: {exc.format_message()}", file=sys.stderr)
        return exc.exit_code
    return 0
