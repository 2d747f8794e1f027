"""Bullhorn's simulator searches the way Bullhorn's Lucene index does (crmsim/bullhorn.py,
"Match"; bullhorn/rest-api-docs ``_search.md``), so a connector that trusted the search would
return other people. Issue 11, item 7: "a connector which trusts the search blindly fails
the contract suite"."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import pytest

from contact_lookup.connectors.bullhorn import BullhornConnector, lucene_query
from contact_lookup.connectors.registry import ConnectorFactory
from crmsim.bullhorn import LuceneError, analyse, parse_lucene
from tests.contract.harness import Harness

Make = Callable[..., Harness]
CALLER = "+12079460958"
# The caller's formats as a RingCentral lookup would send them (E.164 first).
QUERIES = [CALLER, "(207) 946-0958", "2079460958"]
PEOPLE = [
    {"id": 1, "name": "The Caller", "phone": "207.946.0958", "type": "Candidate"},
    # Same national digits, another country: Lucene's token 2079460958 finds her.
    {"id": 2, "name": "London Namesake", "phone": "+44 2079460958", "type": "Contact"},
    # A phrase "207 946 0958" inside a longer number (another country's prefix).
    {"id": 3, "name": "Prefixed", "phone": "+52 1 207 946 0958", "type": "Lead"},
    {"id": 4, "name": "Unrelated", "phone": "+1 415 555 0100", "type": "Contact"},
]


class TrustingBullhorn(BullhornConnector):
    """What a connector without verification answers: every record the search returned."""

    def verify(
        self, record: Mapping[str, Any], queries: Sequence[str], *, extension: bool = False
    ) -> str | None:
        return queries[0]


def names(outcome: Any) -> list[str]:
    return sorted(c["name"] for c in outcome.contacts)


def test_the_index_returns_other_countries_numbers_and_only_verification_drops_them(
    make_harness: Make,
) -> None:
    h = make_harness("bullhorn", PEOPLE)
    trusting = TrustingBullhorn(
        h.connection(), secret=h.connection().secret(h.env), timeout_s=5
    ).find(QUERIES)
    assert names(trusting) == ["London Namesake", "Prefixed", "The Caller"]  # wrong people
    ours = ConnectorFactory(env=dict(h.env), timeout_s=5).build(h.connection())
    outcome = ours.find(QUERIES)
    assert names(outcome) == ["The Caller"] and outcome.dropped == 2


@pytest.mark.parametrize(
    ("query", "ids"),
    [
        ("phone:2079460958", [2]),  # one token of "+44 2079460958"
        ('phone:"207 946 0958"', [1]),  # a phrase, in any punctuation
        ('mobile:"207-946-0958"', [3]),  # the phrase inside a longer number
        ('phone:"+12079460958"', []),  # one token no record holds
        ("phone:207-946-0958", [1]),  # unquoted: any token (207 OR 946 OR 0958)
        ("phone:*0958", [1, 2]),  # wildcard over tokens
        ("phone:2079460958 OR phone:4155550100", [2]),
        ("phone:2079460958 mobile:0958", [2, 3]),  # side by side: ORed
        ('phone:(2079460958 "415 555 0100")', [2, 4]),  # a field's group
        ('phone:"415 555 0100" AND NOT id:4', []),
        ("2079460958", [2]),  # no field: every field
        ("id:1 3", [1, 3]),  # Bullhorn's own example shape ("id:10125 10126 ...")
    ],
)
def test_lucene_semantics(query: str, ids: list[int]) -> None:
    records = [
        {"id": 1, "phone": "207.946.0958"},
        {"id": 2, "phone": "+44 2079460958"},
        {"id": 3, "mobile": "+52 1 207 946 0958"},
        {"id": 4, "phone": "+1 415 555 0100"},
    ]
    tree = parse_lucene(query)
    assert [r["id"] for r in records if tree.matches(r)] == ids


@pytest.mark.parametrize("query", ["phone:+12079460958", "phone:(207", "AND", "phone:a)"])
def test_lucene_syntax_errors(query: str) -> None:
    with pytest.raises(LuceneError):
        parse_lucene(query)


def test_the_connectors_own_queries_parse_and_booleans_analyse() -> None:
    tree = parse_lucene(lucene_query(QUERIES, "Candidate"))
    record = {"phone": "207.946.0958", "isDeleted": False, "status": "Active"}
    assert tree.matches(record)
    assert not tree.matches({**record, "status": "Archived"})
    assert not tree.matches({**record, "isDeleted": True})
    assert analyse(False) == ["false", "0"] and analyse("+1 (415) 555-0100") == [
        "1",
        "415",
        "555",
        "0100",
    ]
