"""The template of a ``crm = "rest"`` connection: parsed and checked when the file is loaded.

A template is four tables of the connection (``[connections.NAME.request]``, ``.response``,
``.paging``, ``.rate_limit_headers``); every rule below fails at load with a ``ConfigError``
that names the table, the key and, for an expression, the expression itself.

``request``
    ``method`` (``GET`` or ``POST``, default ``GET``); ``url``: a path under ``base_url`` or an
    absolute URL; ``headers``: a table of strings; ``body``: an optional JSON body, a table whose
    string values may hold placeholders. Placeholders are Python format fields:

    ========== ================================================================ ===============
    name       value                                                            allowed in
    ========== ================================================================ ===============
    query      the query as planned (E.164, a formatted variant or an extension) url, headers,
                                                                                body
    digits     the query's digits only (``(415) 555-0100`` -> ``4155550100``)   url, headers,
                                                                                body
    national   the national significant number of the looked-up number          url, headers,
                                                                                body
    page       the page number, from 1                                          url, body
    cursor     the cursor the previous page returned (empty on the first)       url, body
    token      the connection's secret (``token_env``)                          headers, body
    ========== ================================================================ ===============

    ``{token}`` is refused in the URL: URLs end up in proxy and access logs. Values are
    percent-encoded in the URL; a body string that is exactly ``"{page}"`` is sent as a number.

``response``
    JMESPath expressions (https://jmespath.org/specification.html) evaluated on the parsed JSON
    body: ``records`` (required: the list of records; anything else, null included, fails the
    lookup as ``CRMUnavailable``: write ``data || `[]``` for a CRM that leaves an empty list
    out), then per record ``id`` and ``phones``
    (required; ``phones`` must give a list of strings, every phone value the CRM holds) and
    optionally ``name``, ``type``, ``email``, ``company``, ``title``, ``createdDate``,
    ``mostRecentActivityDate`` and ``extensions``. Dates may be in any shape
    ``contact_lookup.model.dates`` accepts; the core normalises them.

``paging`` (optional; at most one way)
    ``next_url`` (expression giving the next page's URL), ``next_cursor`` (expression giving a
    cursor sent as ``{cursor}``), ``more`` (expression, truthy while another page exists; the
    next request has ``{page}`` + 1), or ``link_header = true`` (the RFC 8288 ``Link`` header's
    ``rel="next"``); ``max_pages`` (1-20, default 5) bounds the requests per query.

``rate_limit_headers`` (optional)
    ``limit``, ``remaining``, ``reset`` (header names), ``reset_kind`` (``epoch``: Unix seconds,
    or ``seconds``: seconds left in the window), ``retry_after`` (header name, default
    ``Retry-After``: delta-seconds or an HTTP date, RFC 9110 section 10.2.3), and
    ``statuses``: the HTTP statuses that mean "rate limited" (default ``[429]``).
"""

from __future__ import annotations

import string
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import jmespath
import jmespath.exceptions
import jmespath.parser

from contact_lookup.model.errors import ConfigError

SECTIONS = ("request", "response", "paging", "rate_limit_headers")
QUERY_FIELDS = frozenset({"query", "digits", "national"})
URL_FIELDS = QUERY_FIELDS | {"page", "cursor"}
HEADER_FIELDS = QUERY_FIELDS | {"token"}
BODY_FIELDS = URL_FIELDS | {"token"}
RECORD_FIELDS = (
    "id",
    "name",
    "type",
    "phones",
    "email",
    "company",
    "title",
    "createdDate",
    "mostRecentActivityDate",
    "extensions",
)
REQUIRED_RECORD_FIELDS = ("id", "phones")
PAGING_WAYS = ("next_url", "next_cursor", "more", "link_header")
MAX_PAGES = 20


@dataclass(frozen=True)
class Expression:
    """One compiled JMESPath expression and the text it was written as (for messages)."""

    text: str
    parsed: jmespath.parser.ParsedResult

    def search(self, data: Any) -> Any:
        return self.parsed.search(data)


@dataclass(frozen=True)
class RestTemplate:
    method: str
    url: str
    headers: Mapping[str, str]
    body: Any
    records: Expression
    fields: Mapping[str, Expression]
    paging: str | None = None  # one of PAGING_WAYS
    paging_expression: Expression | None = None
    max_pages: int = 5
    limit_header: str | None = None
    remaining_header: str | None = None
    reset_header: str | None = None
    reset_kind: str = "epoch"
    retry_after_header: str = "Retry-After"
    limited_statuses: frozenset[int] = field(default_factory=lambda: frozenset({429}))


class _Where:
    """Builds the error messages of one connection's template."""

    def __init__(self, connection: str) -> None:
        self.connection = connection

    def error(self, section: str, key: str | None, problem: str) -> ConfigError:
        where = f"[connections.{self.connection}.{section}]"
        return ConfigError(f"{where} {key}: {problem}" if key else f"{where}: {problem}")


def _table(options: Mapping[str, Any], section: str, where: _Where) -> Mapping[str, Any]:
    value = options.get(section, {})
    if not isinstance(value, Mapping):
        raise ConfigError(f"[connections.{where.connection}]: {section} must be a table")
    return value


def _unknown(table: Mapping[str, Any], known: tuple[str, ...], section: str, w: _Where) -> None:
    for key in table:
        if key not in known:
            raise w.error(section, key, f"unknown key (known: {', '.join(known)})")


def _placeholders(text: str, allowed: frozenset[str], section: str, key: str, w: _Where) -> None:
    try:
        names = [name for _, name, _, _ in string.Formatter().parse(text) if name is not None]
    except ValueError as exc:
        raise w.error(section, key, f"{text!r} is not a valid template ({exc})") from None
    for name in names:
        if name == "token" and "token" not in allowed:
            raise w.error(
                section, key, f"{{token}} is not allowed here ({text!r}): URLs end up in logs"
            )
        if name not in allowed:
            raise w.error(
                section,
                key,
                f"unknown placeholder {{{name}}} in {text!r} "
                f"(allowed: {', '.join('{' + n + '}' for n in sorted(allowed))})",
            )


def _body_strings(body: Any) -> list[str]:
    if isinstance(body, str):
        return [body]
    if isinstance(body, Mapping):
        return [s for v in body.values() for s in _body_strings(v)]
    if isinstance(body, list):
        return [s for v in body for s in _body_strings(v)]
    return []


def compile_expression(text: Any, section: str, key: str, w: _Where) -> Expression:
    """A JMESPath expression, or ConfigError naming the key and showing the expression."""
    if not isinstance(text, str) or not text.strip():
        raise w.error(section, key, f"must be a JMESPath expression string (got {text!r})")
    try:
        return Expression(text, jmespath.compile(text))
    except jmespath.exceptions.JMESPathError as exc:
        detail = str(exc).splitlines()[0]
        raise w.error(section, key, f"invalid JMESPath expression {text!r}: {detail}") from None


def parse_template(connection: str, options: Mapping[str, Any]) -> RestTemplate:
    """The template of one ``rest`` connection from its options; ConfigError when invalid."""
    w = _Where(connection)
    request = _table(options, "request", w)
    _unknown(request, ("method", "url", "headers", "body"), "request", w)
    method = request.get("method", "GET")
    if method not in ("GET", "POST"):
        raise w.error("request", "method", f"must be GET or POST (got {method!r})")
    url = request.get("url")
    if not isinstance(url, str) or not url:
        raise w.error(
            "request", "url", "is required: the search URL, e.g. '/contacts?phone={query}'"
        )
    _placeholders(url, URL_FIELDS, "request", "url", w)
    headers = request.get("headers", {})
    if not isinstance(headers, Mapping) or not all(isinstance(v, str) for v in headers.values()):
        raise w.error("request", "headers", "must be a table of strings")
    for name, value in headers.items():
        _placeholders(value, HEADER_FIELDS, "request", f"headers.{name}", w)
    body = request.get("body")
    if body is not None:
        if method != "POST":
            raise w.error("request", "body", "is only sent with method = 'POST'")
        if not isinstance(body, Mapping | list):
            raise w.error("request", "body", "must be a table (sent as a JSON object)")
        for text in _body_strings(body):
            _placeholders(text, BODY_FIELDS, "request", "body", w)

    response = _table(options, "response", w)
    _unknown(response, ("records", *RECORD_FIELDS), "response", w)
    for key in ("records", *REQUIRED_RECORD_FIELDS):
        if key not in response:
            raise w.error("response", key, "is required")
    records = compile_expression(response["records"], "response", "records", w)
    fields = {
        key: compile_expression(response[key], "response", key, w)
        for key in RECORD_FIELDS
        if key in response
    }

    paging_table = _table(options, "paging", w)
    _unknown(paging_table, (*PAGING_WAYS, "max_pages"), "paging", w)
    ways = [k for k in PAGING_WAYS if k in paging_table]
    if len(ways) > 1:
        raise w.error("paging", None, f"give one way to the next page, not {' and '.join(ways)}")
    paging = ways[0] if ways else None
    expression = None
    if paging == "link_header":
        if paging_table["link_header"] is not True:
            raise w.error("paging", "link_header", "must be true (or left out)")
    elif paging is not None:
        expression = compile_expression(paging_table[paging], "paging", paging, w)
    if paging == "more" and "{page}" not in url + "".join(_body_strings(body)):
        raise w.error("paging", "more", "needs {page} in request.url or request.body")
    if paging == "next_cursor" and "{cursor}" not in url + "".join(_body_strings(body)):
        raise w.error("paging", "next_cursor", "needs {cursor} in request.url or request.body")
    max_pages = paging_table.get("max_pages", 5)
    if isinstance(max_pages, bool) or not isinstance(max_pages, int):
        raise w.error("paging", "max_pages", f"must be an integer (got {max_pages!r})")
    if not 1 <= max_pages <= MAX_PAGES:
        raise w.error("paging", "max_pages", f"must be from 1 to {MAX_PAGES} (got {max_pages})")

    limits = _table(options, "rate_limit_headers", w)
    header_keys = ("limit", "remaining", "reset", "retry_after")
    _unknown(limits, (*header_keys, "reset_kind", "statuses"), "rate_limit_headers", w)
    for key in header_keys:
        if key in limits and (not isinstance(limits[key], str) or not limits[key]):
            raise w.error("rate_limit_headers", key, "must be a header name")
    reset_kind = limits.get("reset_kind", "epoch")
    if reset_kind not in ("epoch", "seconds"):
        raise w.error(
            "rate_limit_headers", "reset_kind", f"must be epoch or seconds ({reset_kind!r})"
        )
    statuses = limits.get("statuses", [429])
    if (
        not isinstance(statuses, list)
        or not statuses
        or not all(isinstance(s, int) and not isinstance(s, bool) for s in statuses)
        or not all(400 <= s <= 599 for s in statuses)
    ):
        raise w.error(
            "rate_limit_headers",
            "statuses",
            f"must be a list of HTTP error statuses ({statuses!r})",
        )
    return RestTemplate(
        method=method,
        url=url,
        headers=dict(headers),
        body=body,
        records=records,
        fields=fields,
        paging=paging,
        paging_expression=expression,
        max_pages=max_pages,
        limit_header=limits.get("limit"),
        remaining_header=limits.get("remaining"),
        reset_header=limits.get("reset"),
        reset_kind=reset_kind,
        retry_after_header=limits.get("retry_after", "Retry-After"),
        limited_statuses=frozenset(statuses),
    )
