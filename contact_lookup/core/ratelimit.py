"""The shared rate limiter: one budget per CRM connection, kept in Redis for every worker.

Celery's own ``rate_limit`` is per worker process (docs/contracts.md, "Celery on Redis"), so a
CRM-wide limit lives in Redis. Each connection has a budget of ``requests`` per ``window_s``:
its ``rate_limit = "50/60"`` in the connections file, or by default the vendor's published
limit (each connector class's ``default_rate_limit``). A connection with neither (``json``, or
a crm without a default) is not limited at all.

Algorithm: a sliding-window log. A sorted set holds one member per CRM request admitted,
scored with the time its token was taken; a request may go when fewer than the budget's
tokens were taken in the last ``hold_s``. Unlike a token bucket or GCRA, which let a full
burst through and then refill, the log never admits more than ``requests`` in ANY span of
``window_s``, which is what a vendor counting in fixed or sliding windows checks.

- **Multi-token, atomic.** A lookup takes one token per CRM request it will make, all at once,
  in one Lua script: it gets them all or none, so two workers can never each take half.
- **Never sleeps.** Work over the budget raises ``RateLimited(retry_after_s=...)`` before any
  CRM request, with the exact time until enough tokens are free; the task turns that into a
  retry with a countdown (tasks/find_contact.py), so no worker thread waits.
- **Reserve for call pops.** ``reserve`` tokens of each window (``rate_reserve`` of the
  budget, 20% by default, per connection) are for call pops only: any other purpose (call and
  message logging, re-lookups) takes tokens only while, after taking them, at least
  ``reserve`` would still be free. A batch re-lookup can use most of the budget, never all.
- **Held off by the CRM.** When the CRM answers 429, or reports ``remaining == 0`` with a
  reset time, every worker holds off until then (a "blocked until" key), whatever the log says.
- **Slack.** A token is held for ``window_s`` plus 10% (at most 1 s): a request reaches the
  CRM a little after its token was taken (a lookup sends its queries one after another), and
  without slack two requests admitted exactly ``window_s`` apart can land in one CRM window.
- **Clock.** The Redis server's clock (``TIME`` in the script), so workers on machines with
  skewed clocks share one timeline. Tests inject a clock instead.
- **Paid per request.** The guard takes a lookup's planned requests at once; every request
  past those (pages, per-entity searches, enrichment reads) takes one more token before it is
  sent (``core/guard.py``, ``SharedBudget``): nothing reaches the CRM unpaid.
- **Follows the vendor's figures.** Where responses announce the vendor's limit, remaining
  requests and reset (``X-RateLimit-Limit/Remaining/Reset`` and each vendor's equivalent;
  ``follow``), a second count runs beside the log: at most ``remaining`` more tokens until
  ``reset``, and a new vendor window starts from the vendor's ``amount``. Whichever of the
  log and this count is tighter wins, so a CRM announcing 3 per 4 s is never sent a burst at
  the configured 50 per minute after each of its resets. The reserve holds here too: other
  purposes leave the reserve's share of the vendor's amount for call pops (a batch that
  drained the vendor's count would otherwise defer call pops until the vendor's reset).
- **Keys** (contact_lookup/core/keys.py): ``rate_bucket`` (the log), ``rate_block`` and
  ``rate_vendor``, each with a TTL, so an idle connection leaves nothing behind.

Why not a library: ``limits`` (its moving-window strategy, whose Lua script does take a
multi-token ``cost``) and ``pyrate-limiter`` (leaky bucket, a Redis bucket with weights) were
read; neither fits without reshaping every part that matters here:

- no reserve: ``limits`` keys its log by the limit's amount, so a second, smaller limit for
  non-call-pops would count in a separate log; pyrate-limiter has nothing like it;
- no "blocked until" override that a 429 can set and every acquire honours atomically;
- their acquire answers yes or no (``limits``) or sleeps (pyrate-limiter's blocking
  ``Limiter``, which a worker must not do); the wait until *n* tokens are free needs a
  second, non-atomic call (``get_window_stats`` gives only the oldest entry; pyrate-limiter's
  ``bucket.waiting``);
- both stamp entries with each client's own clock (pyrate-limiter's Redis bucket leaves
  Redis ``TIME`` as a TODO), so skewed machines disagree on the window; ``limits`` windows are
  whole seconds.

What remains is ~30 lines of Lua, kept here beside ``decide``, the same rule in Python that
the tests hold the script to.
"""

from __future__ import annotations

import math
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import redis

from contact_lookup.core import keys
from contact_lookup.model.config import Connection, parse_rate_limit
from contact_lookup.model.errors import RateLimited, RateLimitState

MAX_BLOCK_S = 3600.0  # a CRM's reset further away than this is taken as this (a unit mix-up)


@dataclass(frozen=True)
class Limit:
    """One connection's budget: ``requests`` per ``window_s``, ``reserve`` of them for call pops."""

    requests: int
    window_s: float
    reserve: int = 0

    @property
    def hold_s(self) -> float:
        """How long a taken token stays taken: the window plus slack for time in flight."""
        return self.window_s + min(1.0, 0.1 * self.window_s)

    def capacity(self, priority: bool) -> int:
        """Tokens of a window that a purpose may use: all for call pops, less the reserve else."""
        return self.requests if priority else self.requests - self.reserve


def reserve_tokens(requests: int, share: float) -> int:
    """The call-pop reserve of a budget: ``share`` of it rounded up, leaving others at least 1."""
    if requests <= 1:
        return 0
    return min(requests - 1, math.ceil(round(requests * share, 9)))


def limit_for(connection: Connection, default: tuple[int, float] | None = None) -> Limit | None:
    """The connection's budget, or None when it is not rate limited.

    ``default`` is the vendor's published limit (``Connector.default_rate_limit``: requests,
    window in seconds); the connection's own ``rate_limit`` overrides it.
    """
    if connection.rate_limit:
        requests, window_s = parse_rate_limit(connection.rate_limit, connection.name)
    elif default is not None:
        requests, window_s = default
    else:
        return None
    return Limit(requests, window_s, reserve_tokens(requests, connection.rate_reserve))


@dataclass(frozen=True)
class Decision:
    granted: bool
    wait_s: float  # until enough tokens are free (and any hold-off is over); 0 when granted
    used: int  # tokens taken in the current window before this request


def decide(
    stamps: Iterable[float],
    now: float,
    tokens: int,
    capacity: int,
    hold_s: float,
    blocked_until: float | None = None,
) -> Decision:
    """The admission rule, in Python: what ``_ACQUIRE`` computes in Redis (tests hold them equal).

    ``stamps`` are the times tokens were taken. A request for ``tokens`` is granted when no
    hold-off is running and ``used + tokens <= capacity``; a request larger than the capacity
    is granted only into an empty window (it could never fit otherwise). Else ``wait_s`` is
    the longer of the hold-off and the time until the oldest tokens in the way expire.
    """
    live = sorted(s for s in stamps if s > now - hold_s)
    used = len(live)
    wait = max(0.0, blocked_until - now) if blocked_until is not None else 0.0
    over = used + min(tokens, capacity) - capacity
    if over > 0:
        wait = max(wait, live[over - 1] + hold_s - now)
    return Decision(wait <= 0, wait if wait > 0 else 0.0, used)


# Both scripts start here: ``now`` is ARGV[1] when a test injects it, else Redis's own clock,
# so every worker on every machine agrees on time.
_NOW = """
if redis.replicate_commands then redis.replicate_commands() end
local now = tonumber(ARGV[1])
if not now then
  local t = redis.call('TIME')
  now = tonumber(t[1]) + tonumber(t[2]) / 1000000
end
"""

# KEYS: log, block, vendor. ARGV: now ("" = the server's TIME), hold_s, capacity, tokens,
# member id, window_s (the length assumed for a vendor window until a response names its reset),
# the reserve's share of a budget that this purpose must leave (0 for call pops).
# Returns {granted 0/1, wait_s as a string (Lua numbers become integers in replies), used,
# 1 when the vendor's figures are followed (its hash exists), else 0}.
_ADMIT = """
local hold = tonumber(ARGV[2])
local capacity = tonumber(ARGV[3])
local tokens = tonumber(ARGV[4])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - hold)
local used = redis.call('ZCARD', KEYS[1])
local wait = 0
local blocked = tonumber(redis.call('GET', KEYS[2]))
if blocked and blocked > now then wait = blocked - now end
local over = used + math.min(tokens, capacity) - capacity
if over > 0 then
  local entry = redis.call('ZRANGE', KEYS[1], over - 1, over - 1, 'WITHSCORES')
  local free_in = tonumber(entry[2]) + hold - now
  if free_in > wait then wait = free_in end
end
local v = redis.call('HMGET', KEYS[3], 'remaining', 'reset', 'amount', 'span')
local vrem, vreset, vamount = tonumber(v[1]), tonumber(v[2]), tonumber(v[3])
local fresh = 0
if vreset and vreset <= now then
  -- A new vendor window: its full amount, until a reset one window length away (the
  -- length last seen, at most our own window) or until a response names the real reset.
  local span = math.min(tonumber(v[4]) or tonumber(ARGV[6]), tonumber(ARGV[6]))
  if vamount then vrem = vamount; vreset = now + span; fresh = 1 else vrem = nil end
end
-- The call-pop reserve holds in the vendor's count too: other purposes leave the reserve's
-- share of the vendor's amount (ARGV[7]: 0 for call pops) untouched until its reset.
local vkeep = 0
if vamount then vkeep = math.ceil(vamount * tonumber(ARGV[7]) - 1e-9) end
if vrem and vreset and vrem - vkeep < math.min(tokens, (vamount or tokens) - vkeep) then
  if vreset - now > wait then wait = vreset - now end
end
local followed = (v[1] or v[2] or v[3] or v[4]) and 1 or 0
if wait > 0 then return {0, tostring(wait), used, followed} end
for i = 1, tokens do
  redis.call('ZADD', KEYS[1], now, ARGV[5] .. ':' .. i)
end
redis.call('PEXPIRE', KEYS[1], math.ceil(hold * 1000))
if vrem and vreset then
  redis.call('HSET', KEYS[3], 'remaining', tostring(vrem - tokens), 'reset', tostring(vreset))
  -- A window we opened ourselves has a guessed reset: the first response naming the real
  -- one is about this same window, however far the guess was off (see _FOLLOW).
  if fresh == 1 then redis.call('HSET', KEYS[3], 'guessed', '1') end
end
"""
_ACQUIRE = _NOW + _ADMIT + "return {1, '0', used, followed}\n"

# The coalescing election and the acquire in one script (core/guard.py): KEYS and ARGV of
# _ACQUIRE, then KEYS[4] the coalescing lock, ARGV[8] this lookup's token, ARGV[9] the lock's
# TTL (ms). A lock already held returns {2, its token}: a follower, who takes no tokens. Else
# _ACQUIRE's answer, and the lock is taken only when the tokens are (a deferred lookup leads
# nobody: whoever comes next tries for itself).
_ACQUIRE_LEAD = (
    _NOW
    + """
local leader = redis.call('GET', KEYS[4])
if leader then return {2, leader} end
"""
    + _ADMIT
    + """redis.call('SET', KEYS[4], ARGV[8], 'PX', ARGV[9])
return {1, '0', used, followed}
"""
)

# KEYS: vendor. ARGV: now ("" = TIME), remaining ("" = not said), reset (epoch s), amount
# ("" = not said), ttl_ms. Within a live window the count is never loosened by a response
# (requests in flight are not in the vendor's figure yet); a new window (a response naming a
# reset more than 0.5 s after the stored one) takes the figure.
_FOLLOW = (
    _NOW
    + """
local reset = tonumber(ARGV[3])
if not reset or reset <= now then return 0 end
local rem = tonumber(ARGV[2])
local amount = tonumber(ARGV[4])
local cur = redis.call('HMGET', KEYS[1], 'remaining', 'reset', 'amount', 'guessed')
local crem, creset = tonumber(cur[1]), tonumber(cur[2])
local guessed = cur[4] == '1'
local known = amount or tonumber(cur[3])
-- The window's length: the first request of a window sees a full window ahead; else two
-- consecutive resets are one window apart.
if known and rem == known - 1 then
  redis.call('HSET', KEYS[1], 'span', tostring(reset - now))
elseif creset and reset > creset + 0.5 then
  redis.call('HSET', KEYS[1], 'span', tostring(reset - creset))
end
if rem then
  -- Our count is kept only for the window it counts: a response naming a later reset is
  -- about the vendor's next window, whose remaining replaces ours (carrying our count into
  -- it would hold every worker, call pops included, off until that reset for nothing).
  -- A reset we guessed (the window opened by our own acquire) is not the vendor's: its
  -- first response names the real reset of that same window, which can lie a whole second
  -- past the guess (resets in whole epoch seconds: Clio's X-RateLimit-Reset,
  -- docs.developers.clio.com/api-docs/rate-limits; a window started at its first request),
  -- so our count, which holds requests still in flight, stays.
  if crem and creset and creset > now and crem < rem and (guessed or reset <= creset + 0.5) then
    rem = crem
  end
  redis.call('HSET', KEYS[1], 'remaining', tostring(rem), 'reset', tostring(reset))
end
if guessed then redis.call('HDEL', KEYS[1], 'guessed') end
if amount then redis.call('HSET', KEYS[1], 'amount', tostring(amount)) end
redis.call('PEXPIRE', KEYS[1], tonumber(ARGV[5]))
return 1
"""
)

# KEYS: block. ARGV: now ("" = TIME), seconds. Extends the hold-off, never shortens it.
_BLOCK = (
    _NOW
    + """
local seconds = tonumber(ARGV[2])
local till = now + seconds
local current = tonumber(redis.call('GET', KEYS[1]))
if current and current >= till then return tostring(current) end
redis.call('SET', KEYS[1], tostring(till), 'PX', math.ceil(seconds * 1000) + 1000)
return tostring(till)
"""
)


@dataclass(frozen=True)
class Taken:
    """Tokens granted: ``used`` were taken in the window before them; ``followed``: the
    vendor's own figures are being counted (``follow`` has state to keep or drop).
    ``leader``: not granted, a coalescing leader holds the lock (``RateLimiter.take``)."""

    used: int
    followed: bool
    leader: str | None = None


# Celery rounds a countdown to the millisecond; this keeps a retry from landing a hair before
# its tokens are free (and being deferred again for that hair).
RETRY_MARGIN_S = 0.01


class RateLimiter:
    """Takes and holds off a connection's shared budget. Thread-safe (Redis does the work).

    ``clock`` (epoch seconds) replaces the Redis server's clock, for tests.
    """

    def __init__(self, client: redis.Redis, *, clock: Callable[[], float] | None = None) -> None:
        self.redis = client
        self.clock = clock
        self._acquire = client.register_script(_ACQUIRE)
        self._acquire_lead = client.register_script(_ACQUIRE_LEAD)
        self._block = client.register_script(_BLOCK)
        self._follow = client.register_script(_FOLLOW)

    def _now(self) -> str:
        return "" if self.clock is None else repr(self.clock())

    def acquire(self, connection: Connection, limit: Limit, tokens: int, *, priority: bool) -> int:
        """Take ``tokens`` tokens at once, or raise ``RateLimited`` with the wait until free.

        Returns the tokens that were already taken in the window (for logs and tests).
        """
        return self.take(connection, limit, tokens, priority=priority).used

    def take(
        self,
        connection: Connection,
        limit: Limit,
        tokens: int,
        *,
        priority: bool,
        lead: tuple[str, str, int] | None = None,
    ) -> Taken:
        """``acquire``, saying also whether the vendor's figures are followed; with ``lead``
        (the coalescing lock, this lookup's token, the lock's TTL in ms) the lock is taken
        with the tokens, in one script, and a lock already held makes this a follower
        (``Taken.leader``: the holder's token; no tokens taken)."""
        names = [
            keys.rate_bucket(connection.name, connection.instance),
            keys.rate_block(connection.name, connection.instance),
            keys.rate_vendor(connection.name, connection.instance),
        ]
        args: list[Any] = [
            self._now(),
            repr(limit.hold_s),
            limit.capacity(priority),
            tokens,
            uuid.uuid4().hex,
            repr(limit.window_s),
            repr(0.0 if priority else limit.reserve / limit.requests),
        ]
        if lead is None:
            reply: Any = self._acquire(keys=names, args=args)
        else:
            reply = self._acquire_lead(keys=[*names, lead[0]], args=[*args, lead[1], lead[2]])
        granted = int(reply[0])
        if granted == 2:
            leader = reply[1]
            return Taken(0, False, leader.decode() if isinstance(leader, bytes) else str(leader))
        wait_s, used = float(reply[1]), int(reply[2])
        if granted:
            return Taken(used, bool(int(reply[3])))
        raise RateLimited(
            f"The shared rate limit of connection {connection.name!r} "
            f"({limit.requests} requests per {limit.window_s:g} s"
            f"{'' if priority else f', {limit.reserve} kept for call pops'}) is used up.",
            retry_after_s=round(wait_s + RETRY_MARGIN_S, 3),
            status_code=None,
        )

    def follow(self, connection: Connection, state: RateLimitState | None) -> None:
        """Count down the vendor's announced ``remaining`` until its ``reset`` (see above).

        Nothing to follow without a reset instant (Salesforce's rolling day, HubSpot's
        headers): those limits are kept by the configured budget and the CRM's 429s. ``None``
        (a successful response without any figures) stops following: a vendor that no
        longer announces a limit must not be held to the last one it announced.
        """
        key = keys.rate_vendor(connection.name, connection.instance)
        if state is None:
            self.redis.delete(key)
            return
        if state.reset is None:
            return
        if state.remaining is None and state.amount is None:
            return
        self._follow(
            keys=[key],
            args=[
                self._now(),
                "" if state.remaining is None else str(state.remaining),
                repr(float(state.reset)),
                "" if state.amount is None else str(state.amount),
                int(MAX_BLOCK_S * 1000),
            ],
        )

    def hold_off(self, connection: Connection, seconds: float) -> None:
        """Every worker defers this connection's lookups for ``seconds`` (the CRM said so)."""
        seconds = min(max(seconds, 0.0), MAX_BLOCK_S)
        if seconds > 0:
            self._block(
                keys=[keys.rate_block(connection.name, connection.instance)],
                args=[self._now(), repr(seconds)],
            )
