"""Load-time rules of a ``crm = "rest"`` template: each bad template names its key and shows
the expression or placeholder at fault, through the same validation the runtime uses."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from contact_lookup.connectors.registry import validate_config
from contact_lookup.connectors.rest_template import parse_template
from contact_lookup.model.config import parse_config
from contact_lookup.model.errors import ConfigError

GOOD: dict[str, Any] = {
    "request": {"url": "/search?phone={query}", "headers": {"Authorization": "Bearer {token}"}},
    "response": {"records": "data", "id": "id", "phones": "phones[].number"},
}


def load(**sections: Any) -> None:
    table = {"crm": "rest", "base_url": "http://crm", "token_env": "T", **GOOD, **sections}
    validate_config(parse_config({"connections": {"acme": table}}, Path(".")))


def test_a_good_template_loads_with_its_defaults() -> None:
    load()
    t = parse_template("acme", GOOD)
    assert (t.method, t.paging, t.max_pages, t.limited_statuses) == ("GET", None, 5, {429})
    assert t.fields["phones"].search({"phones": [{"number": "1"}]}) == ["1"]


@pytest.mark.parametrize(
    ("sections", "message"),
    [
        # A JMESPath syntax error shows the key and the expression.
        (
            {"response": {**GOOD["response"], "name": "first_name ||"}},
            r"\[connections\.acme\.response\] name: invalid JMESPath expression 'first_name \|\|'",
        ),
        (
            {"response": {"records": "data", "id": "id"}},
            r"\[connections\.acme\.response\] phones: is required",
        ),
        (
            {"response": {**GOOD["response"], "phone_numbers": "x"}},
            r"response\] phone_numbers: unknown key",
        ),
        (
            {"request": {"url": "/search?phone={number}"}},
            r"request\] url: unknown placeholder \{number\} in '/search\?phone=\{number\}'",
        ),
        (
            {"request": {"url": "/search?phone={query}&api_key={token}"}},
            r"request\] url: \{token\} is not allowed here .*URLs end up in logs",
        ),
        ({"request": {"url": "/s?q={query", "method": "GET"}}, r"url: '/s\?q=\{query' is not"),
        ({"request": {"url": "/s", "method": "PUT"}}, r"method: must be GET or POST"),
        ({"request": {"url": "/s", "body": {"q": "{query}"}}}, r"body: is only sent with"),
        (
            {"request": {"url": "/s", "method": "POST", "body": {"q": "{querry}"}}},
            r"body: unknown placeholder \{querry\}",
        ),
        (
            {"paging": {"next_url": "links.next", "link_header": True}},
            r"paging\]: give one way to the next page, not next_url and link_header",
        ),
        ({"paging": {"more": "has_more"}}, r"paging\] more: needs \{page\}"),
        ({"paging": {"next_cursor": "cursor"}}, r"paging\] next_cursor: needs \{cursor\}"),
        ({"paging": {"link_header": True, "max_pages": 50}}, r"max_pages: must be from 1 to 20"),
        ({"rate_limit_headers": {"reset_kind": "ms"}}, r"reset_kind: must be epoch or seconds"),
        ({"rate_limit_headers": {"statuses": [200]}}, r"statuses: must be a list of HTTP error"),
        ({"rate_limit_headers": {"limit": 5}}, r"rate_limit_headers\] limit: must be a header"),
        ({"response": "data"}, r"response must be a dict"),
    ],
)
def test_bad_templates_name_the_key_and_show_the_expression(
    sections: dict[str, Any], message: str
) -> None:
    with pytest.raises(ConfigError, match=message):
        load(**sections)


def test_an_unknown_section_is_an_unknown_key_with_a_suggestion() -> None:
    with pytest.raises(ConfigError, match=r"unknown key 'reponse' .*did you mean 'response'"):
        load(reponse={})
