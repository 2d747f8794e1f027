"""``contact-lookup connectors list`` and ``connectors try``: the connector developer's tools.

``list`` shows every registered connector (entry-point group ``contact_lookup.connectors``):
its ``crm`` name, the class and the distribution that registered it, its default rate limit
and its options. ``try CONNECTION NUMBER`` runs one lookup straight against the CRM (no
cache, no shared limiter, no worker) and prints what a template developer needs: each
request sent (``{token}`` masked), the raw answer, and the contacts it maps to. For a
``rest`` connection every page is shown; for a Python connector, its redacted debug trace.
Nothing printed holds the connection's secret: requests are rendered with the secret masked
and every line also passes through the trace's redaction.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from contact_lookup.connectors.registry import registered
from contact_lookup.model import phone
from contact_lookup.model.errors import InvalidPhoneNumber
from contact_lookup.model.trace import DebugTrace
from contact_lookup.settings import Settings
from producers.cli.errors import UsageError


def _option_doc(option: Any) -> dict[str, Any]:
    toml = {"dict": "table", "str": "string", "int": "integer", "bool": "boolean"}
    kinds = [k.__name__ for k in option.kinds if k is not int or float not in option.kinds]
    out: dict[str, Any] = {
        "type": " or ".join(toml.get(k, k) for k in kinds),
        "help": option.help,
    }
    if option.default is not None:
        out["default"] = option.default
    if option.choices:
        out["choices"] = list(option.choices)
    return out


def cmd_list(args: argparse.Namespace) -> int:
    rows: list[dict[str, Any]] = []
    for entry in registered():
        rate = entry.cls.default_rate_limit
        rows.append(
            {
                "crm": entry.crm,
                "source": entry.source,
                "origin": "built-in" if entry.source.endswith("(contact-lookup)") else "plugin",
                "defaultRateLimit": f"{rate[0]}/{rate[1]:g}" if rate else None,
                "options": {k: _option_doc(o) for k, o in entry.cls.options.items()},
            }
        )
    if args.json:
        for row in rows:
            print(json.dumps(row))
        return 0
    for row in rows:
        limit = row["defaultRateLimit"]
        note = f"  default rate limit {limit}" if limit else ""
        print(f"{row['crm']:<12} {row['origin']:<9} {row['source']}{note}")
        for key, doc in row["options"].items():
            default = f" (default {doc['default']!r})" if "default" in doc else ""
            print(f"    {key} = {doc['type']}{default}: {doc['help']}")
    return 0


def cmd_try(args: argparse.Namespace) -> int:
    from contact_lookup.compose import Runtime
    from contact_lookup.connectors.rest import RestConnector

    runtime = Runtime(Settings.from_env())
    conn = runtime.config.connection(args.connection)
    try:
        number = phone.to_e164(args.number, conn.region)
    except InvalidPhoneNumber as exc:
        raise UsageError(exc.user_message()) from None
    formats = conn.formats if args.formats is None else args.formats
    queries = phone.queries(number, formats)
    trace = DebugTrace()
    # The runtime's factory: an auth = "oauth2" connection gets a fresh access token from the
    # token store (refreshed first when it is about to expire), masked like any secret.
    connector = runtime.connectors.build(conn, trace)
    if isinstance(connector, RestConnector):
        connector.exchanges = []

    def show(label: str, value: Any) -> None:
        text = value if isinstance(value, str) else json.dumps(value, indent=2, default=str)
        print(trace.redact(f"{label}: {text}"))

    show("queries", queries)
    outcome = None
    error = None
    try:
        outcome = connector.find(queries)
    except Exception as exc:  # shown, not raised: the requests before it are the point
        error = exc
    if isinstance(connector, RestConnector):
        for n, ex in enumerate(connector.exchanges or [], 1):
            show(f"request {n}", {"method": ex.method, "url": ex.url, "headers": ex.headers})
            if ex.body is not None:
                show(f"request {n} body", ex.body)
            show(f"answer {n} (HTTP {ex.status})", ex.answer)
        if outcome is not None and outcome.dropped:
            show("dropped", f"{outcome.dropped} record(s) whose phones are not {number}")
    else:
        show("requests", trace.entries)
    if error is not None:
        message = getattr(error, "user_message", lambda: str(error))()
        print(trace.redact(f"error: {type(error).__name__}: {message}"), file=sys.stderr)
        return 1
    assert outcome is not None
    show("contacts", outcome.contacts)
    if outcome.rate_limit is not None:
        show("rate limit", outcome.rate_limit.tracking())
    return 0
