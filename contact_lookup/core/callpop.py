"""Publishing call pops on ``callpop:{rcAccountId}:{rcExtensionId}`` (docs/interface.md section 7).

Both the producers' cache fast path and the worker publish through this one function, so a
watcher sees the same message shape whichever path answered.
"""

from __future__ import annotations

import json
from typing import Any

import redis

from contact_lookup.core import keys

# Stands for the cached contacts array in ``template``; it is the result's last list, so the
# template is cut at its last occurrence (a session id cannot end the message).
CONTACTS_MARK = "\x00contacts\x00"


def message(telephony_session_id: str | None, phone_number: str, result: dict[str, Any]) -> str:
    """The published text of one call pop."""
    return json.dumps(
        {"telephonySessionId": telephony_session_id, "phoneNumber": phone_number, "result": result},
        separators=(",", ":"),
    )


def template(
    telephony_session_id: str | None, phone_number: str, result: dict[str, Any]
) -> tuple[str, str]:
    """``message`` cut around ``result["matchedContactInfo"]``, which is ``CONTACTS_MARK``:
    (before, after), so ``before + contacts_json + after`` is the message for those contacts
    (the producers' one-script fast path joins them inside Redis)."""
    before, mark, after = message(telephony_session_id, phone_number, result).rpartition(
        json.dumps(CONTACTS_MARK)
    )
    if not mark:
        raise ValueError("the result's matchedContactInfo is not CONTACTS_MARK")
    return before, after


def publish(
    client: redis.Redis,
    rc_account: str,
    rc_extension: str,
    telephony_session_id: str | None,
    phone_number: str,
    result: dict[str, Any],
) -> int:
    """Publish one call pop; returns how many subscribers received it."""
    text = message(telephony_session_id, phone_number, result)
    receivers: int = client.publish(keys.callpop_channel(rc_account, rc_extension), text)
    return receivers
