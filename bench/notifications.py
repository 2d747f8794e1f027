"""Realistic RingCentral webhook bodies (docs/contracts.md, "RingCentral notifications"), built
the way RingCentral sends them: the envelope and a telephony-session or instant-SMS body."""

from __future__ import annotations

import uuid as uuidlib
from datetime import UTC, datetime
from typing import Any

from bench.harness import RC_ACCOUNT

EXTENSION_ID = "1474839016"
OWN_NUMBER = "+16505550111"


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def telephony(
    caller: str,
    *,
    session: str,
    status: str = "Setup",
    sequence: int = 1,
    reason: str | None = None,
    extension_id: str = EXTENSION_ID,
) -> dict[str, Any]:
    """An inbound call's telephony-session event for the subscriber's own party."""
    when = _now()
    party_status: dict[str, Any] = {"code": status, "rcc": False}
    if reason:
        party_status["reason"] = reason
    return {
        "uuid": str(uuidlib.uuid4()),
        "event": f"/restapi/v1.0/account/{RC_ACCOUNT}/extension/{extension_id}/telephony/sessions",
        "timestamp": when,
        "subscriptionId": "a8bb5b3e-4a29-4b4a-9c5c-0a3e4d5f6a71",
        "ownerId": extension_id,
        "body": {
            "sequence": sequence,
            "sessionId": session.removeprefix("s-")[:10],
            "telephonySessionId": session,
            "serverId": "10.13.121.137.TAM",
            "eventTime": when,
            "origin": {"type": "Call"},
            "parties": [
                {
                    "accountId": RC_ACCOUNT,
                    "extensionId": extension_id,
                    "id": f"p-{session}-2",
                    "direction": "Inbound",
                    "to": {
                        "phoneNumber": OWN_NUMBER,
                        "name": "Dana Demo",
                        "extensionId": extension_id,
                    },
                    "from": {"phoneNumber": caller, "name": "CALLER"},
                    "status": party_status,
                    "park": {},
                    "missedCall": False,
                    "standAlone": False,
                    "muted": False,
                }
            ],
        },
    }


def sms(sender: str, *, message_id: str, extension_id: str = EXTENSION_ID) -> dict[str, Any]:
    """An inbound SMS instant-message event."""
    when = _now()
    return {
        "uuid": str(uuidlib.uuid4()),
        "event": "/restapi/v1.0/account/~/extension/~/message-store/instant?type=SMS",
        "timestamp": when,
        "subscriptionId": "a8bb5b3e-4a29-4b4a-9c5c-0a3e4d5f6a72",
        "ownerId": extension_id,
        "body": {
            "id": message_id,
            "to": [{"phoneNumber": OWN_NUMBER, "name": "Dana Demo", "target": True}],
            "from": {"phoneNumber": sender, "location": "San Francisco, CA"},
            "type": "SMS",
            "creationTime": when,
            "lastModifiedTime": when,
            "readStatus": "Unread",
            "priority": "Normal",
            "attachments": [{"id": message_id, "type": "Text", "contentType": "text/plain"}],
            "direction": "Inbound",
            "availability": "Alive",
            "subject": "Hello, are you free at 3?",
            "messageStatus": "Received",
            "conversationId": f"7{message_id}",
            "conversation": {"id": f"7{message_id}"},
        },
    }


def call_events(caller: str, n: int) -> list[dict[str, Any]]:
    """The events of one inbound call: ringing, answered, ended (with their sequence)."""
    session = f"s-bench{n:010d}"
    return [
        telephony(caller, session=session, status="Setup", sequence=1),
        telephony(caller, session=session, status="Answered", sequence=2),
        telephony(
            caller, session=session, status="Disconnected", sequence=3, reason="CallerHangup"
        ),
    ]
