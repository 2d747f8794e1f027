"""The webhook benchmark's baseline: the product's gunicorn server running an app that only
parses the notification and answers, with no producer work.

``python -m bench.hello_server --host H --port P [--workers N --threads N]`` calls
``producers.webhook.serve`` itself (same gunicorn worker class, processes, threads, timeouts
and logging), with the app factory swapped for this minimal one, so the two servers differ
only in what a request does.
"""

from __future__ import annotations

import argparse
import json
import sys

from flask import Flask, Response, request

import producers.webhook as webhook


def hello_app() -> Flask:
    app = Flask("bench.hello")

    @app.post("/webhook/ringcentral")
    def ringcentral() -> Response:
        notification = json.loads(request.get_data(cache=False))
        body = {"uuid": notification.get("uuid"), "actions": []}
        return Response(json.dumps(body), mimetype="application/json")

    @app.get("/healthz")
    def healthz() -> Response:
        return Response("{}", mimetype="application/json")

    return app


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.hello_server")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--threads", type=int, default=8)
    args = p.parse_args(argv)
    webhook.app_from_env = hello_app  # serve() builds each gunicorn worker's app through it
    webhook.serve(args.host, args.port, workers=args.workers, threads=args.threads)
    return 0


if __name__ == "__main__":
    sys.exit(main())
