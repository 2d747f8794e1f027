"""Publishing call pops on ``callpop:{rcAccountId}:{rcExtensionId}`` (docs/interface.md section 7).

Both the producers' cache fast path and the worker publish through this one function, so a
watcher sees the same message shape whichever path answered.
"""

from __future__ import annotations

import json
from typing import Any

import redis

from contact_lookup.core import keys


def publish(
    client: redis.Redis,
    rc_account: str,
    rc_extension: str,
    telephony_session_id: str | None,
    phone_number: str,
    result: dict[str, Any],
) -> int:
    """Publish one call pop; returns how many subscribers received it."""
    message = json.dumps(
        {"telephonySessionId": telephony_session_id, "phoneNumber": phone_number, "result": result},
        separators=(",", ":"),
    )
    receivers: int = client.publish(keys.callpop_channel(rc_account, rc_extension), message)
    return receivers
