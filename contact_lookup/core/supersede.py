"""The settle window's supersede rule: only the newest decision for a key is executed.

A call's call log is decided when the call first appears ended, and published with a
countdown (``[telephony] settle_seconds``). Events that arrive during that window may change
whose call log it is (a party that appears late, a lost Answered...). Each decision carries
``supersedeKey`` (one per telephony session) and ``decisionVersion``: a number that grows with
the session's state (``producers.telephony.decision_version``), so a decision taken from an
older state never wins over one taken from a newer state, whichever process took it.

``record`` (producers) stores, atomically, the newest version and what it decided, and says
whether a new job must be sent; ``claim`` (worker, at the top of the task) compares the job's
version with the stored one: an older job was superseded and is dropped without a CRM
request; the newest is marked executed, after which no later decision is published for the
call (one call log per call, even for events that arrive after the window).

The key lives on the state Redis (STATE_URL, noeviction). A job whose key is missing
(expired after ``ttl``, or never written by an older producer) runs: at-least-once wins.
"""

from __future__ import annotations

from typing import Any

import redis

from contact_lookup.core import keys

# The stored value: "VERSION|RAN|DECIDED", RAN '1' once a worker executed that decision.

# KEYS: the supersede key. ARGV: version, what was decided ('' : nothing, the call is open),
# ttl seconds. Returns:
#   'new'   the version is newer and the decision differs: stored; send a job for it
#   'same'  the version is newer but the decision is the stored one: its job stands
#   'old'   an equal or newer version is stored already: this decision is outdated
#   'ran'   a worker already executed the stored decision: the call has its call log
# An open call ('') with nothing stored stores nothing ('same').
_RECORD = """
local cur = redis.call('GET', KEYS[1])
if cur == false then
  if ARGV[2] == '' then return 'same' end
  redis.call('SET', KEYS[1], ARGV[1] .. '|0|' .. ARGV[2], 'EX', tonumber(ARGV[3]))
  return 'new'
end
local bar = string.find(cur, '|', 1, true)
if string.sub(cur, bar + 1, bar + 1) == '1' then return 'ran' end
if tonumber(ARGV[1]) <= tonumber(string.sub(cur, 1, bar - 1)) then return 'old' end
if string.sub(cur, bar + 3) == ARGV[2] then return 'same' end
redis.call('SET', KEYS[1], ARGV[1] .. '|0|' .. ARGV[2], 'EX', tonumber(ARGV[3]))
return 'new'
"""

# KEYS: the supersede key. ARGV: the job's version. Returns the newer stored version when
# the job is superseded; else 0 after marking the stored decision as executed (RAN = '1',
# same TTL), so that no later decision is published for the call; -1 when nothing is stored.
_CLAIM = """
local cur = redis.call('GET', KEYS[1])
if cur == false then return -1 end
local bar = string.find(cur, '|', 1, true)
local stored = tonumber(string.sub(cur, 1, bar - 1))
local mine = tonumber(ARGV[1])
if stored > mine then return stored end
if stored == mine then
  local ran = string.sub(cur, 1, bar) .. '1' .. string.sub(cur, bar + 2)
  local ttl = redis.call('PTTL', KEYS[1])
  if ttl > 0 then
    redis.call('SET', KEYS[1], ran, 'PX', ttl)
  else
    redis.call('SET', KEYS[1], ran)
  end
end
return 0
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
    """Store ``decided`` at ``version`` if newer: 'new', 'same', 'old' or 'ran' (``_RECORD``).
    ``decided``: '' while the call is open, else a short identity of the decision (which
    party's call log, or why none)."""
    if "|" in str(version):
        raise ValueError("version must be an integer")
    out = client.eval(_RECORD, 1, supersede_key, int(version), decided, int(ttl_s))
    return out.decode() if isinstance(out, bytes) else str(out)


def release(client: redis.Redis, supersede_key: str, version: int, decided: str) -> None:
    """Undo ``record`` when its job could not be sent (a redelivery then decides again)."""
    client.eval(_RELEASE, 1, supersede_key, f"{int(version)}|0|{decided}")


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


def _token(supersede_key: Any, version: Any) -> bool:
    """A supersede token the producers could have written (anything else is ignored)."""
    return (
        isinstance(supersede_key, str)
        and supersede_key.startswith(key(""))
        and isinstance(version, int)
        and not isinstance(version, bool)
    )


def superseded(client: redis.Redis, supersede_key: Any, version: Any) -> int | None:
    """The newer version that supersedes (``supersede_key``, ``version``), or None when the
    job is still the newest decision (or carries no valid token, or nothing is stored).
    Read only: the rule as the tests evaluate it on queued jobs."""
    if not _token(supersede_key, version):
        return None
    stored = newest(client, supersede_key)
    return stored if stored is not None and stored > version else None


def claim(client: redis.Redis, supersede_key: Any, version: Any) -> int | None:
    """The worker's check, atomically: the newer version when the job was superseded, else
    None after marking its decision executed (the producers then publish no other call log
    for the call, whatever arrives later)."""
    if not _token(supersede_key, version):
        return None
    newer = int(client.eval(_CLAIM, 1, supersede_key, int(version)))
    return newer if newer > 0 else None


def dropped_result(client: redis.Redis, kwargs: dict[str, Any]) -> dict[str, Any] | None:
    """The task's result when its job was superseded (see ``superseded``), else None.

    Not a failure (``successful`` true, no ``errorType``: Flower shows a succeeded task) and
    no CRM request: ``superseded`` true says why nothing was looked up."""
    supersede_key, version = kwargs.get("supersedeKey"), kwargs.get("decisionVersion")
    if supersede_key is None:
        return None
    newer = claim(client, supersede_key, version)
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
