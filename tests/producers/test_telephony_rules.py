"""The call-status table (producers/telephony.py) against RingCentral's published enums and
the README's table, and ``decide`` on hand-made sessions. Pure: no Redis."""

from __future__ import annotations

import itertools
import re

import pytest

from producers.telephony import (
    CODES,
    REASONS,
    CodeRule,
    Decision,
    PartyRecord,
    ReasonRule,
    SessionView,
    decide,
)
from tests.conftest import ROOT

# RingCentral API reference, schema CallStatusInfo (as generated into RingCentral's SDKs,
# e.g. https://ringcentral.github.io/RingCentral.Net/html/classRingCentral_1_1CallStatusInfo.html)
PUBLISHED_CODES = [
    "Setup",
    "Proceeding",
    "Answered",
    "Disconnected",
    "Gone",
    "Parked",
    "Hold",
    "VoiceMail",
    "FaxReceive",
    "Tds",
    "VoiceMailScreening",
]
PUBLISHED_REASONS = [
    "Pickup",
    "Supervising",
    "TakeOver",
    "Timeout",
    "BlindTransfer",
    "RccTransfer",
    "AttendedTransfer",
    "CallerInputRedirect",
    "CallFlip",
    "ParkLocation",
    "DtmfTransfer",
    "AgentAnswered",
    "AgentDropped",
    "Rejected",
    "Cancelled",
    "InternalError",
    "NoAnswer",
    "TargetBusy",
    "InvalidNumber",
    "InternationalDisabled",
    "DestinationBlocked",
    "NotEnoughFunds",
    "NoSuchUser",
    "CallPark",
    "CallRedirected",
    "CallReplied",
    "CallSwitch",
    "CallFinished",
    "CallDropped",
    # The Telephony Sessions Event reference's own reason list adds this one (ringcentral-api-docs,
    # docs/notifications/event-filters/account-telephony-sessions.md, "Session Status Info").
    "Voicemail",
]


def test_every_published_code_and_reason_has_a_rule() -> None:
    assert sorted(CODES) == sorted(PUBLISHED_CODES)
    assert sorted(REASONS) == sorted(PUBLISHED_REASONS)


def test_the_readme_event_rules_table_is_the_code_table() -> None:
    readme = (ROOT / "README.md").read_text()
    section = readme.split("### Event rules", 1)[1].split("\n## ", 1)[0]
    rows = [r for r in section.splitlines() if r.startswith("| Disconnected | ")]
    listed = [set(re.findall(r"[A-Z][A-Za-z]+", r.split("|")[2])) for r in rows]
    hand_over = {r for r, rule in REASONS.items() if rule is ReasonRule.HAND_OVER}
    log = {r for r, rule in REASONS.items() if rule is ReasonRule.LOG}
    assert listed == [hand_over, log]
    first_cells = [r.split("|")[1] for r in section.splitlines() if r.startswith("| ")]
    for code in CODES:
        assert any(re.search(rf"\b{code}\b", cell) for cell in first_cells), code


def party(
    pid: str, code: str, seq: int, reason: str | None = None, own: bool = True
) -> PartyRecord:
    log = {"connection": "c", "phoneNumber": "+14155550100", "isExtension": False}
    return PartyRecord(pid, own, code, reason, seq, call_log=log if own else None)


def view(
    *records: PartyRecord, answered: tuple[str, ...] = (), first: dict | None = None
) -> SessionView:
    return SessionView({r.party_id: r for r in records}, first or {}, frozenset(answered))


def test_not_ended_while_any_party_seen_is_still_on_the_call() -> None:
    d = decide(view(party("a", "Disconnected", 5), party("remote", "Answered", 4, own=False)))
    assert d == Decision(False, why="the call has not ended: a party is still on it")


def test_the_party_that_answered_beats_one_that_only_rang_whatever_the_sequence() -> None:
    rang = party("ringing-agent", "Disconnected", 9)
    talked = party("agent", "Disconnected", 7)
    d = decide(view(rang, talked, answered=("agent",)))
    assert d.ended and d.party is not None and d.party.party_id == "agent"


def test_a_party_that_rang_and_ended_is_logged_when_the_other_side_has_gone() -> None:
    d = decide(view(party("user", "Disconnected", 6), party("remote", "Gone", 7, own=False)))
    assert d.party is not None and d.party.party_id == "user"


@pytest.mark.parametrize("reason", ["BlindTransfer", "AgentAnswered", "RccTransfer"])
def test_a_leg_that_hands_over_is_not_a_candidate(reason: str) -> None:
    d = decide(view(party("leg", "Disconnected", 5, reason), party("next", "Disconnected", 9)))
    assert d.party is not None and d.party.party_id == "next"
    alone = decide(view(party("leg", "Disconnected", 5, reason)))
    assert alone.ended and alone.party is None and "IVR, queue or transfer legs" in alone.why


def test_an_unanswered_leg_followed_by_another_own_party_is_an_ivr_leg() -> None:
    ivr = party("ivr", "Disconnected", 5)
    user = party("user", "Disconnected", 11)
    d = decide(view(ivr, user, first={"ivr": 3, "user": 6}))
    assert d.party is not None and d.party.party_id == "user"
    routing = PartyRecord("ivr", True, "Disconnected", None, 5, routing=True)
    assert decide(view(routing)).party is None


def test_an_inbound_party_ended_unanswered_and_not_missed_is_a_leg_when_the_call_went_on() -> None:
    """RingCentral's event reference: ``missedCall`` "If 'True' means the call was missed by
    the party". The capture's IVR party ends Disconnected, no reason, never answered,
    ``missedCall: false``: a leg once the call is seen going on without it (a far end that
    ended more than one notification later, or another own party that joined after it). Seen
    alone, it ends exactly like a party whose Answered was lost (an extension-level
    subscription never sees the far end): a candidate, whose early decision the settle window
    supersedes when the user's party appears (test_settle_window.py). A missed call
    (``missedCall: true``), an unanswered outbound call and a body without ``missedCall``
    stay candidates."""
    log = {"connection": "c", "phoneNumber": "+14155550100", "isExtension": False}

    def ended(pid: str, seq: int, direction: str, missed: bool | None) -> PartyRecord:
        return PartyRecord(pid, True, "Disconnected", None, seq, False, log, direction, missed)

    remote = party("remote", "Disconnected", 12, own=False)
    ivr = ended("ivr", 5, "Inbound", False)
    assert decide(view(ivr)).party == ivr  # alone: a lost Answered looks the same
    went_on = decide(view(ivr, remote))
    assert went_on.ended and went_on.party is None, went_on
    # The call ended with it (the far end's end is the same or the next notification): a
    # party that talked but whose Answered was never received.
    for far_end in (5, 6, 4):
        lost = decide(view(ivr, party("remote", "Disconnected", far_end, own=False)))
        assert lost.party == ivr, far_end
    user = ended("user", 11, "Inbound", False)
    assert decide(view(ivr, user)).party == user  # the call went on to the user
    assert decide(view(ivr, remote, user, answered=("user",))).party == user
    for candidate in (
        ended("missed", 5, "Inbound", True),
        ended("dialled", 5, "Outbound", False),
        ended("unknown", 5, "Inbound", None),
    ):
        assert decide(view(candidate, remote)).party == candidate
    encoded = PartyRecord.decode("ivr", ivr.encode())
    assert (encoded.direction, encoded.missed) == ("Inbound", False)


def test_a_far_end_only_seen_ringing_before_the_own_party_ended_does_not_hold_the_call_open() -> (
    None
):
    """An unanswered outbound call whose PSTN party's Disconnected never came (RingCentral
    does not notify every party): logged when the user's party ends. A far end seen talking,
    or ringing after the own party ended, keeps the call open."""
    user = party("user", "Disconnected", 8)
    assert decide(view(user, party("pstn", "Proceeding", 3, own=False))).party == user
    talking = view(user, party("pstn", "Proceeding", 3, own=False), answered=("pstn",))
    assert not decide(talking).ended
    assert not decide(view(user, party("pstn", "Proceeding", 9, own=False))).ended
    assert not decide(view(user, party("pstn", "Answered", 4, own=False))).ended
    assert not decide(view(party("pstn", "Proceeding", 3, own=False))).ended


def test_the_decision_does_not_depend_on_the_order_records_are_held_in() -> None:
    records = [
        party("a", "Disconnected", 4, "AttendedTransfer"),
        party("b", "Disconnected", 8),
        party("c", "Disconnected", 8),
        party("r", "Disconnected", 9, own=False),
    ]
    answers = {
        decide(view(*p, answered=("b", "c"))).party.party_id  # type: ignore[union-attr]
        for p in itertools.permutations(records)
    }
    assert answers == {"c"}  # tie on sequence: the highest party id, in every order
    assert CodeRule.RINGING is CODES["Proceeding"]
