"""The cached call pop in one Redis round trip: the event checks, the cache read and the
PUBLISH in one Lua script.

``EventPipeline`` checks a notification (delivery dedupe, session liveness, sequence,
once-keys: its ``_CHECK`` script), then answered a cached call pop with a GET and a PUBLISH:
three round trips before the pop reached a subscriber. ``FastPath`` runs the same check
script as a Lua function and then, in the same script, for every call-pop step whose verdict
is ``go`` and whose answer is cached, reads the cache and publishes the pop: one round trip.

The published message is built in Python ahead of the script as a template, ``before`` +
the cached contacts + ``after``: the result a cache hit gives (``LookupService.cached_result``
with a marker contact: placeholder, tracking, return message), serialised exactly as
``contact_lookup.core.callpop.publish`` serialises it, and cut at the marker. The cache
stores its contacts as compact JSON (``ContactCache.put``), so the script splices the stored
array's inside between the two halves and the subscriber receives, byte for byte, the message
the three-round-trip path would have published (tests/producers/test_fastpath.py holds them
equal). A step whose result depends on its contacts (a resolver) is not templated and keeps
the slower path; so does a cached value that is not a non-empty JSON array (the pipeline's
``ContactCache.get`` then treats it as a miss and deletes it).

Keys: the script's declared keys are the check script's; cache keys and channels travel in
ARGV, which Redis Cluster would refuse to route. This deployment's cache Redis is one
server (docker-compose.yml), and ``FastPath`` is only used when the pipeline's client is the
cache's client (``EventPipeline`` falls back to the separate calls otherwise).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import redis

from contact_lookup.core import keys
from contact_lookup.core.request import LookupRequest
from contact_lookup.core.service import LookupService

# A verdict the script gives a step it answered; the contacts it published follow.
POPPED = "pop\n"
_MARK = {"id": "\u0000fastpath-contacts\u0000"}
_MARK_JSON = json.dumps(_MARK, separators=(",", ":"))

# After the check function's verdicts: ARGV[4 + 4 * (step - 1) ...] = cache key, channel,
# before, after ('' cache key: the step has no fast path).
_POP = """
local out = check()
if out[1] ~= 'ok' then return out end
for step = 1, #out - 1 do
  local at = 4 + 4 * (step - 1)
  local cache_key = ARGV[at]
  if out[step + 1] == 'go' and cache_key and cache_key ~= '' then
    local raw = redis.call('GET', cache_key)
    if raw and string.sub(raw, 1, 1) == '[' and string.sub(raw, -1) == ']' then
      local ok, decoded = pcall(cjson.decode, raw)
      if ok and type(decoded) == 'table' and #decoded > 0 then
        local inside = string.sub(raw, 2, -2)
        redis.call('PUBLISH', ARGV[at + 1], ARGV[at + 2] .. inside .. ARGV[at + 3])
        out[step + 1] = 'pop\\n' .. raw
      end
    end
  end
end
return out
"""


@dataclass(frozen=True)
class PopTemplate:
    """A call pop's message around its contacts, and where its answer is cached."""

    cache_key: str
    channel: str
    before: str
    after: str

    def result(self, contacts_json: str) -> dict[str, Any]:
        """The published result, rebuilt from the contacts the script spliced in."""
        message = self.before + contacts_json[1:-1] + self.after
        result: dict[str, Any] = json.loads(message)["result"]
        return result


def template(
    service: LookupService,
    connection: str,
    request: LookupRequest,
    *,
    rc_account: str,
    rc_extension: str,
    telephony_session_id: str | None,
) -> PopTemplate | None:
    """The message template of one call pop, or None when its result depends on the contacts
    (a resolver runs). ContactLookupError when the request is invalid for its connection."""
    prepared = service.prepare(connection, request)
    result = service.cached_result(prepared, request, [dict(_MARK)])
    if "resolution" in result:
        return None
    message = json.dumps(
        {
            "telephonySessionId": telephony_session_id,
            "phoneNumber": request.phone_number,
            "result": result,
        },
        separators=(",", ":"),
    )
    before, marker, after = message.partition(_MARK_JSON)
    if not marker or _MARK_JSON in after:
        return None
    return PopTemplate(
        prepared.cache_key, keys.callpop_channel(rc_account, rc_extension), before, after
    )


class FastPath:
    """Runs the pipeline's check script and the cached call pops in one round trip."""

    def __init__(self, client: redis.Redis, check_script: str) -> None:
        source = "local function check()\n" + check_script + "\nend\n" + _POP
        self._script = client.register_script(source)

    def run(
        self,
        keys_: Sequence[str],
        args: Sequence[Any],
        templates: Sequence[PopTemplate | None],
    ) -> list[str]:
        """The check script's verdicts, a popped step's being ``POPPED`` + its contacts."""
        extra: list[Any] = []
        for t in templates:
            extra += [t.cache_key, t.channel, t.before, t.after] if t else ["", "", "", ""]
        raw = self._script(keys=list(keys_), args=[*args, *extra])
        return [v.decode() if isinstance(v, bytes) else str(v) for v in raw]
