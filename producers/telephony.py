"""RingCentral call-status rules and the one-call-log-per-call decision. Pure: no Redis, no clock.

Source of every value: RingCentral's API reference, schema ``CallStatusInfo`` (telephony
session notifications, ``body.parties[].status``), as published in RingCentral's OpenAPI
specification and its generated SDKs (e.g. the RingCentral .NET SDK's ``CallStatusInfo``:
https://ringcentral.github.io/RingCentral.Net/html/classRingCentral_1_1CallStatusInfo.html):

- ``code``: Setup, Proceeding, Answered, Disconnected, Gone, Parked, Hold, VoiceMail,
  FaxReceive, Tds, VoiceMailScreening.
- ``reason`` ("Reason for call termination. For 'Disconnected' code only"): Pickup,
  Supervising, TakeOver, Timeout, BlindTransfer, RccTransfer, AttendedTransfer,
  CallerInputRedirect, CallFlip, ParkLocation, DtmfTransfer, AgentAnswered, AgentDropped,
  Rejected, Cancelled, InternalError, NoAnswer, TargetBusy, InvalidNumber,
  InternationalDisabled, DestinationBlocked, NotEnoughFunds, NoSuchUser, CallPark,
  CallRedirected, CallReplied, CallSwitch, CallFinished, CallDropped.

``CODES`` and ``REASONS`` below are the README's "Event rules" table. A value RingCentral adds
later is treated like no reason (the party's own call ended), so a call is never left unlogged.

One call, one call log: ``decide`` reads every party of a session seen so far (whatever order
their events came in) and names the one own party the call log is for, once every party seen
has ended (a far end only ever seen ringing, before the last own party ended, counts as
ended: see ``_over``). Which party: among own parties that ended for a logging reason and
are not a routing leg, one that answered (Answered, Hold or Parked seen) beats one that only rang or
reached voicemail; then the one that ended last (highest ``sequence``); then the lowest party
id. A routing leg is a party that passes the call on rather than talking:

- its extension is listed in ``[telephony] routing_extensions`` (IVR menus and call queues:
  RingCentral extension types IvrMenu and Department), or
- it ended with a pass-on reason (``REASONS``) or the status Gone, or
- it ended with no reason without ever answering, and another own party joined the session
  after it (a later first ``sequence``): the call went on from it, as from an IVR menu's party
  (``tests/fixtures/ringcentral/inbound-pstn-ivr-to-user.jsonl``: ``Setup`` then
  ``Disconnected`` at 5, no reason, the user's party from 6); or
- it is an Inbound party that ended with no reason, never answered, says ``missedCall:
  false`` ("missedCall: If 'True' means the call was missed by the party", RingCentral's
  Account/Extension Telephony Sessions Event reference, ringcentral-api-docs
  ``docs/notifications/event-filters/account-telephony-sessions.md``), and a far end (a party
  without the subscriber's extension) ended more than one notification after it: the call
  went on without it (the capture: the IVR menu 5, the PSTN caller 12). A far end that ended
  in the same or the adjacent notification ended the call with it.

Such a party with no evidence that the call went on is a candidate: a party whose Answered
was lost ends exactly like an IVR menu's, and an extension-level subscription never sees the
far end. The settle window (``[telephony] settle_seconds``, ``contact_lookup.core.supersede``)
makes that safe: the decision is published with a countdown and a ``decision_version``; when
the user's party appears within the window, the call reopens and the early decision for the
IVR menu is superseded before it runs. An IVR menu's party whose successor is never seen
within the window is logged unless ``routing_extensions`` lists it.

A call that reached only recognised legs gets no call log.

``decision_version`` numbers the session state a decision was taken from: it grows with
every change the pipeline's merge makes to the state, so of two decisions the newer state's
wins (the supersede rule, ``contact_lookup.core.supersede``).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, replace
from enum import StrEnum
from typing import Any


class CodeRule(StrEnum):
    RINGING = "ringing"  # call pop for the party, while it is still ringing
    TALKING = "talking"  # the party answered: it is the one to log, when the call ends
    VOICEMAIL = "voicemail"  # reached the party's voicemail: a missed call for it
    IN_PROGRESS = "in progress"  # no job, the call goes on
    FAX = "fax"  # a fax, logged as a message (fax event), never as a call
    GONE = "gone"  # the party left: the call goes on elsewhere
    ENDED = "ended"  # see REASONS


CODES: Mapping[str, CodeRule] = {
    "Setup": CodeRule.RINGING,
    "Proceeding": CodeRule.RINGING,
    "Answered": CodeRule.TALKING,
    "Hold": CodeRule.TALKING,
    "Parked": CodeRule.TALKING,
    "Tds": CodeRule.IN_PROGRESS,
    "VoiceMail": CodeRule.VOICEMAIL,
    "VoiceMailScreening": CodeRule.VOICEMAIL,
    "FaxReceive": CodeRule.FAX,
    "Gone": CodeRule.GONE,
    "Disconnected": CodeRule.ENDED,
}


class ReasonRule(StrEnum):
    HAND_OVER = "hand over"  # the call goes on with another party: no call log for this one
    LOG = "log"  # the call ended here (talked, missed, refused or failed): log it


_PASS_ON = (
    "Pickup",  # another phone picked the call up
    "Supervising",  # a supervisor's monitoring leg
    "TakeOver",  # another party took the call over
    "BlindTransfer",
    "RccTransfer",  # a transfer by RingCentral's own apps (Call Control API)
    "AttendedTransfer",
    "CallerInputRedirect",  # the caller chose another destination (IVR input)
    "CallFlip",  # moved to another of the user's devices
    "ParkLocation",
    "DtmfTransfer",
    "AgentAnswered",  # a call queue's leg: an agent answered
    "AgentDropped",  # a call queue's leg: the agent left, the queue goes on
    "CallPark",
    "CallRedirected",
    "CallSwitch",
)
_LOG = (
    "Timeout",
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
    "CallReplied",  # declined with a text reply: a missed call for the party
    "CallFinished",
    "CallDropped",
    "Voicemail",  # listed in the event reference's reason enum: reached voicemail, missed
)
REASONS: Mapping[str, ReasonRule] = {
    **{r: ReasonRule.HAND_OVER for r in _PASS_ON},
    **{r: ReasonRule.LOG for r in _LOG},
}

TERMINAL = (CodeRule.ENDED, CodeRule.GONE)


def code_rule(code: str | None) -> CodeRule:
    """The rule for a status code; an unknown or missing code is IN_PROGRESS (no job)."""
    return CODES.get(code or "", CodeRule.IN_PROGRESS)


def passes_on(code: str | None, reason: str | None) -> bool:
    """True when this status means the call goes on with another party (no call log here)."""
    rule = code_rule(code)
    return rule is CodeRule.GONE or (
        rule is CodeRule.ENDED and REASONS.get(reason or "") is ReasonRule.HAND_OVER
    )


@dataclass(frozen=True)
class PartyRecord:
    """One party of a session as last seen: what ``EventPipeline`` keeps per party in Redis.

    ``call_log``: the call-log job for this party (``Job`` fields as a dict) when it is an own
    party, or the reason it cannot have one (``str``), or None for another party.
    """

    party_id: str
    own: bool
    code: str | None
    reason: str | None
    sequence: int | None
    routing: bool = False
    call_log: dict[str, Any] | str | None = None
    direction: str | None = None  # Inbound | Outbound, as sent
    missed: bool | None = None  # the event's missedCall (None: not sent)

    def encode(self) -> str:
        return json.dumps(
            {
                "own": self.own,
                "code": self.code,
                "reason": self.reason,
                "seq": self.sequence,
                "routing": self.routing,
                "log": self.call_log,
                "dir": self.direction,
                "missed": self.missed,
            },
            separators=(",", ":"),
        )

    @classmethod
    def decode(cls, party_id: str, text: str) -> PartyRecord:
        data = json.loads(text)
        return cls(
            party_id,
            bool(data.get("own")),
            data.get("code"),
            data.get("reason"),
            data.get("seq"),
            bool(data.get("routing")),
            data.get("log"),
            data.get("dir"),
            data.get("missed"),
        )


@dataclass(frozen=True)
class SessionView:
    """A session as seen so far: each party's latest record, when it first appeared (lowest
    ``sequence``), and whether it ever answered (Answered, Hold or Parked, in any order)."""

    parties: Mapping[str, PartyRecord]
    first_sequence: Mapping[str, int]
    answered: frozenset[str]

    @classmethod
    def from_hash(cls, fields: Mapping[str, str]) -> SessionView:
        """From the Redis hash: ``P`` -> record, ``P|first`` -> sequence, ``P|answered``,
        ``P|own``."""
        parties, first, answered, own = {}, {}, set(), set()
        for name, value in fields.items():
            party, _, tag = name.partition("|")
            if not tag:
                parties[party] = PartyRecord.decode(party, value)
            elif tag == "first":
                first[party] = int(value)
            elif tag == "answered":
                answered.add(party)
            elif tag == "own":
                own.add(party)
        for party in own & parties.keys():  # own through any subscription, in any order
            parties[party] = replace(parties[party], own=True)
        return cls(parties, first, frozenset(answered))


@dataclass(frozen=True)
class Decision:
    """``ended``: every party seen has ended. ``party``: whose call log it is (None: none)."""

    ended: bool
    party: PartyRecord | None = None
    why: str = ""


def decide(view: SessionView) -> Decision:
    """Whose call log this call gets, if it has ended. Same answer in any event order once
    the same events are in."""
    if not view.parties:
        return Decision(False, why="no party seen")
    if not _over(view):
        return Decision(False, why="the call has not ended: a party is still on it")
    own = [p for p in view.parties.values() if p.own]
    candidates = [p for p in own if not _is_leg(p, own, view)]
    if not candidates:
        return Decision(
            True,
            why="no own party talked or missed the call (only IVR, queue or transfer legs)",
        )

    def rank(p: PartyRecord) -> tuple[int, int, str]:
        return (1 if p.party_id in view.answered else 0, p.sequence or 0, p.party_id)

    best = max(candidates, key=rank)
    return Decision(True, best)


def _over(view: SessionView) -> bool:
    """Every party seen has ended; or every own party has, and each other party still on
    was only ever seen ringing, before the last own party ended (an unanswered outbound call
    whose far end's Disconnected never came: RingCentral does not notify every party, see
    "Current limitations" in its Telephony Session Notification guide). A far end that was
    seen talking (as the PSTN caller is while an IVR hands the call on) keeps the call open."""
    parties = list(view.parties.values())
    if all(code_rule(p.code) in TERMINAL for p in parties):
        return True
    own = [p for p in parties if p.own]
    if not own or any(code_rule(p.code) not in TERMINAL for p in own):
        return False
    last_own_end = max(p.sequence or 0 for p in own)
    return all(
        code_rule(p.code) in TERMINAL
        or (
            code_rule(p.code) is CodeRule.RINGING
            and p.party_id not in view.answered
            and p.sequence is not None
            and p.sequence < last_own_end
        )
        for p in parties
        if not p.own
    )


def _is_leg(p: PartyRecord, own: list[PartyRecord], view: SessionView) -> bool:
    if p.routing or passes_on(p.code, p.reason):
        return True
    if code_rule(p.code) is not CodeRule.ENDED:
        return True
    unanswered = p.reason is None and p.party_id not in view.answered
    if unanswered and is_routing_end(p) and _far_end_ended_later(p, view):
        # An IVR menu's end: the far end went on after it. Without that evidence it is a
        # candidate (a talking party whose Answered was lost ends the same way), superseded
        # within the settle window if the call goes on to another own party.
        return True
    if p.reason is None and p.party_id not in view.answered and p.sequence is not None:
        # An IVR menu's party: ends with no reason, never answered, and the call goes on to
        # another own party that first appears after it ended.
        return any(
            q.party_id != p.party_id
            and view.first_sequence.get(q.party_id, q.sequence or 0) > p.sequence
            for q in own
        )
    return False


def _far_end_ended_later(p: PartyRecord, view: SessionView) -> bool:
    """A party other than the subscriber's ended more than one notification after ``p`` by
    ``sequence``: the call went on without ``p`` (the captures: the IVR menu's Disconnected 5,
    the PSTN caller's 12; the user's 11 and the caller's 12 end the call together)."""
    if p.sequence is None:
        return False
    return any(
        not q.own
        and code_rule(q.code) in TERMINAL
        and q.sequence is not None
        and q.sequence - p.sequence > 1
        for q in view.parties.values()
    )


def is_routing_end(p: PartyRecord) -> bool:
    """An Inbound party's end that RingCentral marks as not missed (``missedCall: false``).
    With no reason and no answer seen, it is a routing leg (IVR menu, queue): see the module
    docstring."""
    return p.direction == "Inbound" and p.missed is False and code_rule(p.code) is CodeRule.ENDED


# Above any real sequence: a party's first sequence counts as (_FIRST_BASE - first), which
# grows when an older event of the party arrives late.
_FIRST_BASE = 1_000_000


def decision_version(view: SessionView) -> int:
    """A number that grows strictly with every change the pipeline's merge can make to a
    session: a new party, a newer ``sequence`` for a party, an older first ``sequence``, a
    party seen talking or seen as own. Equal states give equal numbers (any process), so the
    decision of a newer state always carries a higher version. (A record replaced by an event
    without ``sequence`` does not change it: such bodies are not versioned.)"""
    total = 0
    for party in view.parties.values():
        total += 1 + (party.sequence or 0) + (1 if party.own else 0)
        first = view.first_sequence.get(party.party_id)
        if first is not None:
            total += max(0, _FIRST_BASE - first)
    return total + len(view.answered)
