import pytest

from contact_lookup.core.resolve import MISSING_CREATED_DATE_MESSAGE, resolve
from contact_lookup.model.contact import placeholder


def c(
    id_: str, name: str | None = None, created: object = None, activity: object = None
) -> dict[str, object]:
    return {"id": id_, "name": name, "createdDate": created, "mostRecentActivityDate": activity}


def test_earliest_created_picks_oldest_across_formats() -> None:
    contacts = [
        c("a", created="2021-01-01T00:00:00Z"),
        c("b", created=1546300800),
        c("c", created="2019-06-01"),
        placeholder(),
    ]
    resolution, warning = resolve("earliest-created", contacts)
    assert resolution == {
        "strategy": "earliest-created",
        "contactId": "b",
        "reason": "earliest-created",
    }
    assert warning is None


def test_earliest_created_ties_go_to_the_earlier_contact() -> None:
    contacts = [
        c("x", created="2020-01-01T00:00:00Z"),
        c("y", created="2020-01-01"),
        c("z", created="2020-01-01T00:00:00+00:00"),
    ]
    assert resolve("earliest-created", contacts)[0]["contactId"] == "x"


@pytest.mark.parametrize("bad", [None, "", "01/02/2020", "2020-02-30", "soon"])
def test_earliest_created_is_all_or_nothing(bad: object) -> None:
    contacts = [c("a", created="2020-01-01"), c("b", created=bad)]
    resolution, warning = resolve("earliest-created", contacts)
    assert resolution["contactId"] is None
    assert resolution["reason"] == "missing-created-date"
    assert warning is not None and warning["messageType"] == "warning"
    assert warning["message"] == MISSING_CREATED_DATE_MESSAGE
    assert "connector developer" in warning["message"]


def test_placeholder_is_never_a_candidate_nor_needs_a_date() -> None:
    contacts = [placeholder(), c("only", created="2022-02-02")]
    assert resolve("earliest-created", contacts)[0]["contactId"] == "only"
    assert resolve("first-alphabetical", [placeholder()])[0] == {
        "strategy": "first-alphabetical",
        "contactId": None,
        "reason": "no-match",
    }


def test_most_recent_activity_drops_undated_and_picks_newest() -> None:
    contacts = [
        c("a", activity=None),
        c("b", activity="2024-01-01"),
        c("c", activity="Mon, 03 Jun 2024 12:00:00 GMT"),
        c("d", activity="bad"),
    ]
    assert resolve("most-recent-activity", contacts)[0]["contactId"] == "c"


def test_most_recent_activity_ties_to_earlier_and_none_dated() -> None:
    tie = [c("a", activity="2024-01-01"), c("b", activity="2024-01-01T00:00:00Z")]
    assert resolve("most-recent-activity", tie)[0]["contactId"] == "a"
    none = resolve("most-recent-activity", [c("a"), c("b", activity="x")])[0]
    assert none["contactId"] is None and none["reason"] == "no-activity-date"


def test_first_alphabetical_is_case_insensitive_with_ties_to_earlier() -> None:
    contacts = [c("1", "bob"), c("2", "Alice"), c("3", "alice"), c("4", None)]
    assert resolve("first-alphabetical", contacts)[0]["contactId"] == "2"


def test_unknown_strategy_is_an_error() -> None:
    with pytest.raises(ValueError):
        resolve("newest", [c("a")])
