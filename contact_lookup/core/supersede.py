"""The settle window's supersede rule: only the newest decision for a key is executed.

A call's call log is decided when the call first appears ended, and published with a
countdown (``[telephony] settle_seconds``). Events that arrive during that window may change
whose call log it is (a party that appears late, a lost Answered...). Each decision carries
``supersedeKey`` (one per telephony session) and ``decisionVersion``: a number that grows with
the session's state (``producers.telephony.decision_version``), so a decision taken from an
older state never wins over one taken from a newer state, whichever process took it.

``record`` (producers) stores, atomically, the newest version and what it decided, and says
whether a new job must be sent; ``newest`` (worker) reads the stored version: a job whose
version is not the stored one was superseded and is dropped without a CRM request.

The key lives on the state Redis (STATE_URL, noeviction). A job whose key is missing
(expired after ``ttl``, or never written by an older producer) runs: at-least-once wins.
"""

from __future__ import annotations

from typing import Any

import redis

from contact_lookup.core import keys

# KEYS: the supersede key. ARGV: version, what was decided ('' : nothing, the call is open),
# ttl seconds. The value is "version|decided". Returns:
#   'new'   the version is newer and the decision differs: stored; send a job for it
#   'same'  the version is newer but the decision is the stored one: its job stands
#   'old'   an equal or newer version is stored already: this decision is outdated
# An open call ('') with nothing stored stores nothing ('same').
_RECORD = """
local v = tonumber(ARGV[1])
local cur = redis.call('GET', KEYS[1])
if cur == false then
  if ARGV[2] == '' then return 'same' end
  redis.call('SET', KEYS[1], ARGV[1] .. '|' .. ARGV[2], 'EX', tonumber(ARGV[3]))
  return 'new'
end
local bar = string.find(cur, '|', 1, true)
local cv = tonumber(string.sub(cur, 1, bar - 1))
if v <= cv then return 'old' end
if string.sub(cur, bar + 1) == ARGV[2] then return 'same' end
redis.call('SET', KEYS[1], ARGV[1] .. '|' .. ARGV[2], 'EX', tonumber(ARGV[3]))
return 'new'
"""

# KEYS: the supersede key. ARGV: the value 'record' stored. Deletes it only if unchanged.
_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""


def key(session: str) -> str:
    """The supersede key of a telephony session's call log."""
    return keys.once("call_log", session)  # the call log's once-key (one per call)


def record(client: redis.Redis, supersede_key: str, version: int, decided: str, ttl_s: int) -> str:
    """Store ``decided`` at ``version`` if newer: 'new', 'same' or 'old' (see ``_RECORD``).
    ``decided``: '' while the call is open, else a short identity of the decision (which
    party's call log, or why none)."""
    if "|" in str(version):
        raise ValueError("version must be an integer")
    out = client.eval(_RECORD, 1, supersede_key, int(version), decided, int(ttl_s))
    return out.decode() if isinstance(out, bytes) else str(out)


def release(client: redis.Redis, supersede_key: str, version: int, decided: str) -> None:
    """Undo ``record`` when its job could not be sent (a redelivery then decides again)."""
    client.eval(_RELEASE, 1, supersede_key, f"{int(version)}|{decided}")


def newest(client: redis.Redis, supersede_key: str) -> int | None:
    """The newest stored version for the key, or None when nothing is stored."""
    raw = client.get(supersede_key)
    if raw is None:
        return None
    text = raw.decode() if isinstance(raw, bytes) else str(raw)
    try:
        return int(text.partition("|")[0])
    except ValueError:
        return None


def superseded(client: redis.Redis, supersede_key: Any, version: Any) -> int | None:
    """The newer version that supersedes (``supersede_key``, ``version``), or None when the
    job is still the newest decision (or carries no valid token, or nothing is stored)."""
    if not isinstance(supersede_key, str) or not supersede_key.startswith(key("")):
        return None
    if not isinstance(version, int) or isinstance(version, bool):
        return None
    stored = newest(client, supersede_key)
    return stored if stored is not None and stored > version else None


def dropped_result(client: redis.Redis, kwargs: dict[str, Any]) -> dict[str, Any] | None:
    """The task's result when its job was superseded (see ``superseded``), else None.

    Not a failure (``successful`` true, no ``errorType``: Flower shows a succeeded task) and
    no CRM request: ``superseded`` true says why nothing was looked up."""
    supersede_key, version = kwargs.get("supersedeKey"), kwargs.get("decisionVersion")
    if supersede_key is None:
        return None
    newer = superseded(client, supersede_key, version)
    if newer is None:
        return None
    return {
        "successful": True,
        "superseded": True,
        "matchedContactInfo": [],
        "returnMessage": None,
        "extraDataTracking": {
            "superseded": f"decision {version} was replaced by decision {newer} of the same "
            "call before it ran: no lookup",
            "decisionVersion": version,
            "newestDecisionVersion": newer,
        },
    }
