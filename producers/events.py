"""RingCentral notifications -> job plans. Pure: no Redis, no Celery, no clock.

``plan(notification, config)`` reads one webhook body (the envelope ``{uuid, event,
timestamp, subscriptionId, ownerId, body}``) and says, step by step, which lookup job it asks
for or why it asks for none. The stateful rules (deduplication, sequence order, one job per
identity, the cache fast path) are applied by ``producers.pipeline.EventPipeline`` to the keys the
plan names.

Rules:

- Telephony sessions (``.../telephony/sessions``): every party's status is kept per session
  by the pipeline (``producers.telephony``, the README's "Event rules" table, from
  RingCentral's ``CallStatusInfo``). One step per *own* party, i.e. a party with an
  ``extensionId`` (where the event path names an extension, the party of that extension):
  Setup or Proceeding -> ``call_pop`` for the caller (``from``) when Inbound, for the callee
  (``to``) when Outbound and the connection has ``outbound_pop``; Disconnected -> a
  ``call_log`` candidate, unless its reason passes the call on (transfers, pickups, parks,
  queue legs); Gone passes the call on too. The pipeline sends one call log per call, for the
  party ``producers.telephony.decide`` names once every party has ended, under the settle
  window's supersede rule (``contact_lookup.core.supersede``).
- Instant SMS (``.../message-store/instant?type=SMS``) and fax (``.../fax``): ``message_log``
  for the other party: ``from`` when Inbound (the default), else the ``to[]`` entry with
  ``target: true``, else the first. Pager and VoiceMail are not logged. Message-store change
  events (``.../message-store`` with ``changes``) carry no numbers: no job.
- Numbers: ``extensionNumber``, or 1 to 6 digits with no ``+``, is an internal extension
  (looked up with ``isExtension`` where the connection has ``extension_lookup``); anything
  else is a phone number normalised to E.164 in the connection's region. On SMS and fax, bare
  1 to 6 digit numbers are carrier short codes, not extensions (internal texts are Pager
  messages and internal senders carry ``extensionNumber``): no lookup. A missing or null
  number is an anonymous caller: no lookup.
- The connection comes from the party's ``extensionId`` (messages: the event path's
  extension, else ``ownerId``) through ``[extensions]`` and its ``default``. Every job
  (call pop, call log, message log) carries that extension (``rcExtensionId``) so the worker
  uses the extension's own CRM grant where it connected one.

Every field is optional: a missing or mistyped field gives a skip with a reason, never an
exception.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs

from contact_lookup.core import keys
from contact_lookup.model import dates, phone
from contact_lookup.model.config import Config, Connection
from contact_lookup.model.errors import InvalidPhoneNumber
from producers.telephony import CodeRule, PartyRecord, code_rule, passes_on

LOGGED_MESSAGES = ("SMS", "Fax")
UNLOGGED_MESSAGES = ("Pager", "VoiceMail")

_EXTENSION_DIGITS = re.compile(r"\d{1,6}")
_PATH = re.compile(
    r"^/restapi/v1\.0/account/(?P<account>[^/]+)"
    r"(?:/extension/(?P<extension>[^/]+))?/(?P<resource>.+?)/?$"
)


@dataclass(frozen=True)
class Job:
    """One lookup to send (or to answer from the cache, for a call pop)."""

    purpose: str
    connection: str
    phone_number: str  # E.164, or the extension digits when is_extension
    is_extension: bool = False
    once_key: str | None = None  # the job happens once per this key (None: no such identity)
    rc_account: str | None = None  # call pops: where to publish
    rc_extension: str | None = None
    telephony_session_id: str | None = None
    message_type: str | None = None  # SMS or Fax, for message_log
    # Call logs: (supersedeKey, decisionVersion, what was decided) and the settle countdown.
    supersede: tuple[str, int, str] | None = None
    countdown_s: float | None = None

    def call_pop(self) -> dict[str, Any] | None:
        """The ``callPop`` task argument: where the worker publishes the answer."""
        if self.purpose != "call_pop":
            return None
        return {
            "rcAccountId": self.rc_account,
            "rcExtensionId": self.rc_extension,
            "telephonySessionId": self.telephony_session_id,
        }


@dataclass(frozen=True)
class Skip:
    """No job, and why."""

    reason: str
    purpose: str | None = None
    phone_number: str | None = None
    message_type: str | None = None


@dataclass(frozen=True)
class Step:
    """One own party (telephony) or one message: a job or a skip. ``party_id``: the party."""

    outcome: Job | Skip
    party_id: str | None = None


@dataclass(frozen=True)
class Plan:
    """What one notification says. Telephony events also carry ``session``, ``sequence``,
    ``event_time`` (epoch seconds, from ``eventTime`` or the envelope's ``timestamp``), a
    record of every party in the event and the parties it shows talking (``answered``)."""

    uuid: str | None
    steps: tuple[Step, ...]
    sequence: int | None = None
    session: str | None = None
    event_time: float | None = None
    parties: tuple[PartyRecord, ...] = ()
    answered: tuple[str, ...] = ()


# --- small readers that never raise on a missing or mistyped field -----------------------


def _map(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _text(value: Any) -> str | None:
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, int | str):
        text = str(value).strip()
        return text or None
    return None


def _int(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.strip().lstrip("-").isdigit():
        return int(value.strip())
    return None


def _numeric(value: str | None) -> str | None:
    """An id from the event path, or None for ``~`` (the caller's own) and other non-ids."""
    return value if value and value.isdigit() else None


@dataclass(frozen=True)
class _Event:
    kind: str  # telephony | message | fax | message-store | unknown
    account: str | None
    extension: str | None
    query: Mapping[str, list[str]]
    timestamp: Any = None  # the envelope's delivery time


def _event(notification: Mapping[str, Any], body: Mapping[str, Any]) -> _Event:
    event = notification.get("event")
    if isinstance(event, str) and event:
        path, _, query_text = event.partition("?")
        query = parse_qs(query_text)
        match = _PATH.match(path)
        if match is None:
            return _Event("unknown", None, None, query)
        account, extension = _numeric(match["account"]), _numeric(match["extension"])
        resource = match["resource"]
        kind = {
            "telephony/sessions": "telephony",
            "message-store/instant": "message",
            "fax": "fax",
            "message-store": "message-store",
        }.get(resource, "unknown")
        return _Event(kind, account, extension, query, notification.get("timestamp"))
    # No event path: fall back on the body's shape.
    if isinstance(body.get("parties"), list):
        kind = "telephony"
    elif isinstance(body.get("changes"), list):
        kind = "message-store"
    elif _text(body.get("type")) in (*LOGGED_MESSAGES, *UNLOGGED_MESSAGES):
        kind = "message"
    else:
        kind = "unknown"
    return _Event(kind, None, None, {}, notification.get("timestamp"))


def plan(notification: Any, config: Config) -> Plan:
    """What one notification asks for. Never raises."""
    if not isinstance(notification, Mapping):
        return Plan(None, (Step(Skip("not a notification: expected a JSON object")),))
    uuid = _text(notification.get("uuid"))
    body = _map(notification.get("body"))
    event = _event(notification, body)
    if event.kind == "telephony":
        return _telephony(uuid, body, event, config)
    if event.kind in ("message", "fax"):
        return Plan(uuid, (Step(_message(notification, body, event, config)),))
    if event.kind == "message-store":
        return Plan(
            uuid,
            (
                Step(
                    Skip(
                        "message-store change event: it carries no phone "
                        "numbers (only counts of changed messages)"
                    )
                ),
            ),
        )
    name = _text(notification.get("event")) or "(no event path)"
    return Plan(uuid, (Step(Skip(f"unknown event {name[:120]!r}: no job for it")),))


# --- telephony ---------------------------------------------------------------------------


def _telephony(uuid: str | None, body: Mapping[str, Any], event: _Event, config: Config) -> Plan:
    session = _text(body.get("telephonySessionId")) or _text(body.get("sessionId"))
    raw_parties = body.get("parties")
    parties = (
        [p for p in raw_parties if isinstance(p, Mapping)] if isinstance(raw_parties, list) else []
    )
    if not parties:
        return Plan(uuid, (Step(Skip("telephony event without parties")),))
    sequence = _int(body.get("sequence"))
    event_time = _epoch(body.get("eventTime")) or _epoch(event.timestamp)

    def is_own(p: Mapping[str, Any]) -> bool:
        ext = _text(p.get("extensionId"))
        return bool(ext) and (not event.extension or ext == event.extension)

    own = [p for p in parties if is_own(p)]
    records: list[PartyRecord] = []
    answered: list[str] = []
    steps: list[Step] = []
    for party in parties:
        party_id = _text(party.get("id")) or _text(party.get("extensionId"))
        code, reason = _status(party)
        if party_id and session:
            mine = is_own(party)
            extension_id = _text(party.get("extensionId"))
            routing = mine and extension_id in config.routing_extensions
            log = _call_log(party, event, config) if mine else None
            missed = party.get("missedCall")
            records.append(
                PartyRecord(
                    party_id,
                    mine,
                    code,
                    reason,
                    sequence,
                    routing,
                    _log_field(log),
                    _text(party.get("direction")),
                    missed if isinstance(missed, bool) else None,
                )
            )
            if code_rule(code) is CodeRule.TALKING:
                answered.append(party_id)
        if is_own(party):
            steps.append(Step(_party(party, party_id, session, event, config), party_id))
    if not own:
        steps = [
            Step(
                Skip(
                    "no party of the subscriber's own extension "
                    "(a party with extensionId) in the event"
                )
            )
        ]
    return Plan(
        uuid,
        tuple(steps),
        sequence=sequence,
        session=session,
        event_time=event_time,
        parties=tuple(records),
        answered=tuple(answered),
    )


def _epoch(value: Any) -> float | None:
    moment = dates.parse_date(value) if isinstance(value, str) else None
    return moment.timestamp() if moment is not None else None


def _log_field(log: Job | Skip | None) -> dict[str, Any] | str | None:
    if isinstance(log, Job):
        return {
            "connection": log.connection,
            "phoneNumber": log.phone_number,
            "isExtension": log.is_extension,
            "rcExtensionId": log.rc_extension,
        }
    return log.reason if isinstance(log, Skip) else None


def logged_key(session: str) -> str:
    """The once-key of a call's one call log."""
    return keys.once("call_log", session)


def call_log_job(session: str, field: dict[str, Any] | str | None) -> Job | Skip:
    """The call-log job kept in a party's record (``PartyRecord.call_log``), for the session.
    It carries the party's extension (``rcExtensionId``): the worker uses that extension's own
    CRM grant when it connected one (``auth connect NAME --extension ID``), as for call pops."""
    if isinstance(field, dict):
        extension = field.get("rcExtensionId")
        return Job(
            "call_log",
            str(field["connection"]),
            str(field["phoneNumber"]),
            bool(field.get("isExtension")),
            logged_key(session),
            rc_extension=str(extension) if extension else None,
        )
    return Skip(field or "no call log for this party", "call_log")


def _status(party: Mapping[str, Any]) -> tuple[str | None, str | None]:
    status = _map(party.get("status"))
    return _text(status.get("code")), _text(status.get("reason"))


def _party(
    party: Mapping[str, Any],
    party_id: str | None,
    session: str | None,
    event: _Event,
    config: Config,
) -> Job | Skip:
    """The step for one own party: a call pop while ringing, the call log (decided by the
    pipeline for the whole call) when it ended, else a skip saying why not."""
    code, reason = _status(party)
    rule = code_rule(code)
    shown = _number_text(_other_side(party))  # the other party's number as sent
    if rule is CodeRule.RINGING:
        return _call_pop(party, party_id, session, event, config)
    if passes_on(code, reason):
        why = f"disconnected by {reason}" if rule is CodeRule.ENDED else "status Gone"
        return Skip(f"{why}: the call goes on elsewhere, no call log", "call_log", shown)
    if rule is CodeRule.ENDED:
        return _call_log(party, event, config)
    if rule is CodeRule.FAX:
        return Skip("status FaxReceive: a fax is logged as a message, not a call", None, shown)
    return Skip(f"status {code or '(missing)'}: no job for this update", None, shown)


def _other_side(party: Mapping[str, Any]) -> Any:
    direction = _text(party.get("direction"))
    return {"Inbound": party.get("from"), "Outbound": party.get("to")}.get(direction or "")


def _who(party: Mapping[str, Any], purpose: str, config: Config) -> Connection | Skip:
    extension_id = _text(party.get("extensionId"))
    conn = config.connection_for_extension(extension_id)
    if conn is None:
        return Skip(
            f"no connection for extension {extension_id}: it is not in [extensions] "
            "and there is no default",
            purpose,
            _number_text(_other_side(party)),
        )
    direction = _text(party.get("direction"))
    if direction not in ("Inbound", "Outbound"):
        return Skip(
            f"party direction {direction or '(missing)'}: cannot tell the other party", purpose
        )
    return conn


def _call_log(party: Mapping[str, Any], event: _Event, config: Config) -> Job | Skip:
    conn = _who(party, "call_log", config)
    if isinstance(conn, Skip):
        return conn
    side = _other_side(party)
    target = _target(side, conn, bare_digits_are_extensions=True, who="caller")
    if isinstance(target, str):
        return Skip(target, "call_log", _number_text(side))
    number, is_extension = target
    extension = _text(party.get("extensionId"))
    return Job("call_log", conn.name, number, is_extension, rc_extension=extension)


def _call_pop(
    party: Mapping[str, Any],
    party_id: str | None,
    session: str | None,
    event: _Event,
    config: Config,
) -> Job | Skip:
    purpose = "call_pop"
    conn = _who(party, purpose, config)
    if isinstance(conn, Skip):
        return conn
    side = _other_side(party)
    shown = _number_text(side)
    if _text(party.get("extensionId")) in config.routing_extensions:
        return Skip(
            "IVR or queue extension ([telephony] routing_extensions): nobody answers there, "
            "no call pop",
            purpose,
            shown,
        )
    if _text(party.get("direction")) == "Outbound" and not conn.outbound_pop:
        return Skip(
            f"outbound call: call pops for outbound calls are off for connection "
            f"{conn.name!r} (outbound_pop = false)",
            purpose,
            shown,
        )
    target = _target(side, conn, bare_digits_are_extensions=True, who="caller")
    if isinstance(target, str):
        return Skip(target, purpose, shown)
    number, is_extension = target
    account = _text(party.get("accountId")) or event.account or conn.rc_account or None
    if account is None:
        return Skip(
            "no RingCentral account id (party.accountId, the event path or the "
            "connection's rc_account) to publish the call pop on",
            purpose,
            number,
        )
    once = keys.once("call_pop", session, party_id) if session and party_id else None
    return Job(
        purpose,
        conn.name,
        number,
        is_extension,
        once,
        rc_account=account,
        rc_extension=_text(party.get("extensionId")),
        telephony_session_id=session,
    )


# --- messages ----------------------------------------------------------------------------


def _message(
    notification: Mapping[str, Any], body: Mapping[str, Any], event: _Event, config: Config
) -> Job | Skip:
    default_type = "Fax" if event.kind == "fax" else (event.query.get("type") or ["SMS"])[0]
    message_type = _text(body.get("type")) or default_type
    if message_type in UNLOGGED_MESSAGES:
        return Skip(
            f"{message_type} message: only SMS and fax are logged",
            "message_log",
            message_type=message_type,
        )
    if message_type not in LOGGED_MESSAGES:
        return Skip(
            f"message type {message_type[:40]!r}: only SMS and fax are logged", "message_log"
        )
    extension_id = event.extension or _text(notification.get("ownerId"))
    conn = config.connection_for_extension(extension_id)
    if conn is None:
        return Skip(
            f"no connection for extension {extension_id}: it is not in [extensions] "
            "and there is no default",
            "message_log",
            message_type=message_type,
        )
    direction = _text(body.get("direction")) or "Inbound"
    if direction == "Inbound":
        side: Any = body.get("from")
        who = "sender"
    elif direction == "Outbound":
        recipients = (
            [r for r in body.get("to") or [] if isinstance(r, Mapping)]
            if isinstance(body.get("to"), list)
            else []
        )
        targets = [r for r in recipients if r.get("target") is True]
        side = (targets or recipients or [{}])[0]
        who = "recipient"
    else:
        return Skip(
            f"message direction {direction[:40]!r}: cannot tell the other party",
            "message_log",
            message_type=message_type,
        )
    target = _target(side, conn, bare_digits_are_extensions=False, who=who)
    if isinstance(target, str):
        return Skip(target, "message_log", _number_text(side), message_type)
    number, is_extension = target
    message_id = _text(body.get("id"))
    once = keys.once("message_log", extension_id or "-", message_id) if message_id else None
    return Job(
        "message_log",
        conn.name,
        number,
        is_extension,
        once,
        rc_extension=event.extension,  # the path's extension: its own CRM grant, if any
        message_type=message_type,
    )


# --- numbers -----------------------------------------------------------------------------


def _number_text(side: Any) -> str | None:
    side = _map(side)
    return _text(side.get("extensionNumber")) or _text(side.get("phoneNumber"))


def _target(
    side: Any, conn: Connection, *, bare_digits_are_extensions: bool, who: str
) -> tuple[str, bool] | str:
    """(number, is_extension) to look up, or the reason there is none."""
    side = _map(side)
    extension_number = _text(side.get("extensionNumber"))
    raw = side.get("phoneNumber")
    if extension_number is not None:
        text, is_extension = extension_number, True
    elif raw is None or (isinstance(raw, str) and not raw.strip()):
        return f"anonymous {who}: no phone number to look up"
    elif _text(raw) is None:
        return InvalidPhoneNumber(raw).user_message()
    else:
        text = str(raw).strip()
        is_extension = bool(_EXTENSION_DIGITS.fullmatch(text))
        if is_extension and not bare_digits_are_extensions:
            return InvalidPhoneNumber(text, "is a short code, not a phone number").user_message()
    if is_extension:
        if not conn.extension_lookup:
            return (
                f"internal extension {text}: extension lookup is off for connection "
                f"{conn.name!r} (extension_lookup = false)"
            )
        try:
            return phone.extension(text), True
        except InvalidPhoneNumber as exc:
            return exc.user_message()
    try:
        return phone.to_e164(text, conn.region), False
    except InvalidPhoneNumber as exc:
        return exc.user_message()
