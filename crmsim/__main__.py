"""``python -m crmsim CRM --port P --contacts FILE``: run one CRM simulator in the foreground,
so a connector can be tried without a CRM account."""

from __future__ import annotations

import argparse
import contextlib
import importlib
import signal
import sys
import threading

from crmsim import NOT_BUILT_IN, VENDORS


def simulator_class(crm: str) -> type:
    cls: type = importlib.import_module(f"crmsim.{crm}").SIMULATOR
    return cls


DEFAULT_TOKEN = "sim-token"


def main(argv: list[str] | None = None) -> int:
    vendors = [*VENDORS, *NOT_BUILT_IN]
    p = argparse.ArgumentParser(prog="python -m crmsim", description=__doc__)
    p.add_argument("crm", choices=vendors)
    p.add_argument("--port", type=int, default=0)
    p.add_argument("--contacts", default="examples/contacts.json")
    p.add_argument(
        "--token",
        default=DEFAULT_TOKEN,
        help=f"the credential the simulator accepts (default {DEFAULT_TOKEN})",
    )
    p.add_argument("--rate-limit", default=None, help="REQUESTS/SECONDS, e.g. 50/60")
    p.add_argument("--latency", type=float, default=0.0, help="seconds added to each response")
    p.add_argument(
        "--oauth-lifetime",
        type=float,
        default=None,
        metavar="SECONDS",
        help="serve the vendor's OAuth token endpoint and authorize page; access tokens live "
        "this long (crmsim/oauth.py)",
    )
    p.add_argument("--oauth-rotate", action="store_true", help="new refresh token per refresh")
    args = p.parse_args(argv)
    rate = None
    if args.rate_limit:
        count, _, window = args.rate_limit.partition("/")
        rate = (int(count), float(window or 1))
    sim = simulator_class(args.crm)(
        args.contacts, token=args.token, rate_limit=rate, latency_s=args.latency, port=args.port
    ).start()
    if args.oauth_lifetime is not None:
        from crmsim.oauth import enable

        oauth = enable(sim, lifetime_s=args.oauth_lifetime, rotate=args.oauth_rotate)
        table, env = oauth.connection(), oauth.env()
    else:
        # The default is no secret (it is in --help); a token given on the command line is
        # not echoed back.
        shown = DEFAULT_TOKEN if args.token == DEFAULT_TOKEN else "<the --token value>"
        table, env = sim.connection(), {key: shown for key in sim.env()}
    print(f"{args.crm} simulator on {sim.url}; connection table:", flush=True)
    for key, value in table.items():
        print(f"  {key} = {value!r}")
    for key, value in env.items():
        print(f"  export {key}={value}")
    if args.oauth_lifetime is not None:
        print("  then: contact-lookup auth connect NAME --listen 127.0.0.1:PORT", flush=True)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    with contextlib.suppress(KeyboardInterrupt):
        stop.wait()
    sim.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
