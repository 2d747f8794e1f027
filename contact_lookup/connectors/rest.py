"""``crm = "rest"``: any CRM with a phone search over HTTP and JSON, described in the config.

The connection's template (``contact_lookup.connectors.rest_template``: request, response,
paging, rate-limit headers) replaces the Python a connector would otherwise be. Everything
else is the core's as for every connector: phone formats and planning, pacing by the shared
limiter (``rate_limit`` of the connection), caching, date normalisation
(``contact_lookup.model.dates``) and the error tree (``http.HttpConnector.check``).

One query is one request per page, at most ``paging.max_pages``. Each record is mapped to the
spec's field names with its ``phones`` (and ``extensions``) and handed to the base class,
which verifies it like every connector's (``Connector.verify``: one of its ``phones`` is the
looked-up number read in the connection's region, or equals a planned query exactly), because
a search endpoint may match more widely than equality (a contains-search, a global search over
names and addresses). Records that fail are dropped and counted in ``FindOutcome.dropped``.

A connection with ``auth = "oauth2"`` gets the token store's access token as its secret, the
core refreshing it before it expires and once more after a 401 (``ConnectorFactory.renew``):
``{token}`` is always the access token of the connector being built.

Example: ``examples/rest/capsule.toml`` and ``examples/rest/copper.toml``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, urlsplit

import jmespath.exceptions
import phonenumbers
import requests

from contact_lookup.connectors.base import EXTENSIONS, PHONES, Option, SearchPage
from contact_lookup.connectors.http import (
    HttpConnector,
    read_rate_limit,
)
from contact_lookup.connectors.rest_template import SECTIONS, RestTemplate, parse_template
from contact_lookup.model import phone
from contact_lookup.model.config import Connection
from contact_lookup.model.errors import (
    CRMUnavailable,
    RateLimited,
    RateLimitState,
)

MASK = "****"
_NON_DIGITS = re.compile(r"\D")
_HELP = {
    "request": "method, url, headers and body of the search (placeholders {query} {digits} ...)",
    "response": "JMESPath: records, and id, phones, name, type, email, company, title, dates",
    "paging": "next_url | next_cursor | more | link_header = true, and max_pages",
    "rate_limit_headers": "limit, remaining, reset (+ reset_kind), retry_after, statuses",
}


@dataclass
class Exchange:
    """One request and its answer, kept for ``contact-lookup connectors try`` (secrets masked)."""

    method: str
    url: str
    headers: dict[str, str]
    body: Any
    status: int | None = None
    answer: Any = None


class RestConnector(HttpConnector):
    crm = "rest"
    options = {section: Option(dict, _HELP[section]) for section in SECTIONS}

    # docs/connectors.md: an extension lookup matches ``extensions`` or ``phones`` exactly (the
    # base class's rule, given both lists: see ``_record``).
    supports_extension = True

    @classmethod
    def check_connection(cls, connection: Connection) -> None:
        """Load-time validation of the template (ConfigError naming the key and expression)."""
        super().check_connection(connection)
        parse_template(connection.name, connection.options)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.template: RestTemplate = parse_template(self.connection.name, self.connection.options)
        self.retry_after_header = self.template.retry_after_header
        self.complete = True  # False when max_pages stopped the paging early
        self.exchanges: list[Exchange] | None = None  # set to [] to keep them (connectors try)

    # ----- the request -----------------------------------------------------------------------
    def values(self, query: str, page: int = 1, cursor: str = "") -> dict[str, str]:
        """The placeholder values for one request of ``query``."""
        number = self.lookup_terms[0] if self.lookup_terms else query
        try:
            national = phone.national_digits(number) if number.startswith("+") else number
        except phonenumbers.NumberParseException:
            national = _NON_DIGITS.sub("", number)
        return {
            "query": query,
            "digits": _NON_DIGITS.sub("", query),
            "national": national,
            "page": str(page),
            "cursor": cursor,
            "token": self.secret or "",
        }

    def render(
        self, query: str, page: int = 1, cursor: str = "", *, masked: bool = False
    ) -> tuple[str, str, dict[str, str], Any]:
        """(method, url, headers, JSON body) of one request; ``masked`` hides the secret."""
        values = self.values(query, page, cursor)
        if masked:
            values["token"] = MASK
        t = self.template
        url = t.url.format(**{k: quote(v, safe="") for k, v in values.items()})
        headers = {name: value.format(**values) for name, value in t.headers.items()}
        body = _render_body(t.body, values) if t.body is not None else None
        return t.method, self.url(url), headers, body

    # ----- one query -------------------------------------------------------------------------
    def search(self, query: str) -> SearchPage:
        t = self.template
        found: list[Mapping[str, Any]] = []
        state: RateLimitState | None = None
        page, cursor, next_url = 1, "", None
        for index in range(t.max_pages):
            method, url, headers, body = self.render(query, page, cursor)
            if next_url is not None:
                url = self._own_url(next_url)
            resp = self.request(method, url, headers=headers, json=body)
            state = self.rate_limit_state(resp) or state
            self._keep(query, page, cursor, url if next_url is not None else None, resp)
            answer = self._answer(resp)
            records = self._records(answer, resp)
            found.extend(records)
            next_url, cursor, more = self._next(answer, resp)
            if not more or not records:
                break
            page += 1
            if index == t.max_pages - 1:
                self.complete = False  # the CRM has more pages than we may read
        return SearchPage([self._record(raw) for raw in found], state)

    def _answer(self, resp: requests.Response) -> Any:
        self.check(resp)
        if resp.status_code == 204:
            return None  # "No Content": some CRMs answer an empty search so (RFC 9110 15.3.5)
        return self.json_body(resp)  # an empty or broken 200 body is a failure, not "nobody"

    def _keep(
        self,
        query: str,
        page: int,
        cursor: str,
        next_url: str | None,
        resp: requests.Response,
    ) -> None:
        if self.exchanges is None:
            return
        method, url, headers, body = self.render(query, page, cursor, masked=True)
        try:
            answer: Any = json.loads(resp.content)
        except (ValueError, UnicodeDecodeError):
            answer = resp.content[:2000].decode("utf-8", "replace")
        self.exchanges.append(
            Exchange(method, next_url or url, headers, body, resp.status_code, answer)
        )

    def _own_url(self, link: str) -> str:
        """A next-page link, only when it stays on ``base_url``'s scheme and host: the secret
        goes with every request, so a link elsewhere is a broken answer, never followed."""
        url = self.url(link)
        here, there = urlsplit(self.connection.base_url or ""), urlsplit(url)
        if (there.scheme, there.netloc) != (here.scheme, here.netloc):
            raise CRMUnavailable("The CRM's next-page link points at another host.")
        return url

    def _records(self, answer: Any, resp: requests.Response) -> list[Any]:
        if answer is None:
            return []
        found = self._evaluate("records", answer)
        if not isinstance(found, list):
            # null too: a mistyped expression must not read as "no contact" forever. A CRM that
            # leaves the list out when empty is written `data || \`[]\``.
            raise CRMUnavailable(
                "The CRM's answer does not fit the template: response.records "
                f"{self.template.records.text!r} gave {type(found).__name__}, not a list.",
                status_code=resp.status_code,
            )
        return found

    def _next(self, answer: Any, resp: requests.Response) -> tuple[str | None, str, bool]:
        """(next URL, next cursor, whether there is a next page)."""
        t = self.template
        if t.paging == "link_header":
            url = resp.links.get("next", {}).get("url")
            return url, "", bool(url)
        if t.paging is None or answer is None:
            return None, "", False
        value = self._evaluate(t.paging, answer, t.paging_expression)
        if t.paging == "next_url":
            url = value if isinstance(value, str) and value else None
            return url, "", bool(url)
        if t.paging == "next_cursor":
            cursor = str(value) if value not in (None, "", False) else ""
            return None, cursor, bool(cursor)
        return None, "", bool(value)

    def _evaluate(self, key: str, data: Any, expression: Any = None) -> Any:
        expr = expression or (
            self.template.records if key == "records" else self.template.fields[key]
        )
        try:
            return expr.search(data)
        except jmespath.exceptions.JMESPathError as exc:
            where = f"paging.{key}" if expression is not None else f"response.{key}"
            raise CRMUnavailable(
                f"The CRM's answer does not fit the template: {where} {expr.text!r} failed "
                f"({type(exc).__name__})."
            ) from None

    # ----- one record ------------------------------------------------------------------------
    def _record(self, raw: Any) -> dict[str, Any]:
        """The record in spec field names with its ``phones`` (and ``extensions``): whether it
        is the number is the base class's to decide (``Connector.verify``)."""
        out: dict[str, Any] = {"additionalInfo": None}
        for key in self.template.fields:
            out[key] = self._evaluate(key, raw)
        out[PHONES] = _strings(out.get(PHONES))
        # Where a template has no extension field, a CRM keeps extensions among the phones.
        out[EXTENSIONS] = [*_strings(out.get(EXTENSIONS)), *out[PHONES]]
        return out

    # ----- vendor signals, as the template names them ----------------------------------------
    def rate_limit_state(self, resp: requests.Response) -> RateLimitState | None:
        t = self.template
        headers = (t.limit_header, t.remaining_header, t.reset_header)
        return read_rate_limit(resp.headers, *headers, t.reset_kind == "seconds")

    def check(self, resp: requests.Response) -> None:
        if resp.status_code in self.template.limited_statuses:
            raise RateLimited(
                retry_after_s=self.retry_after(resp),
                status_code=resp.status_code,
                rate_limit=self.rate_limit_state(resp),
            )
        super().check(resp)


def _strings(value: Any) -> list[str]:
    """A phone or extension list as strings: one scalar becomes a list; nulls are dropped."""
    items = value if isinstance(value, list) else [value]
    out = []
    for item in items:
        if isinstance(item, str) and item.strip():
            out.append(item)
        elif isinstance(item, int) and not isinstance(item, bool):
            out.append(str(item))
    return out


def _render_body(body: Any, values: Mapping[str, str]) -> Any:
    if isinstance(body, str):
        if body == "{page}":
            return int(values["page"])
        return body.format(**values)
    if isinstance(body, Mapping):
        return {k: _render_body(v, values) for k, v in body.items()}
    if isinstance(body, list):
        return [_render_body(v, values) for v in body]
    return body
