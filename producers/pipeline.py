"""The stateful producer: a notification's plan -> deduplicated, ordered jobs on the queues.

One ``EventPipeline`` serves the webhook, ``replay`` and the demo. Its Redis is the state Redis
(STATE_URL, never evicting). For each notification:

1. An event older than ``max_event_age_s`` by its ``eventTime`` (the envelope's ``timestamp``
   when it has none) is ``stale``: skipped whole, e.g. a replay of yesterday's stream.
2. One Lua script on the cache Redis, atomically, marks the delivery ``uuid`` as seen (SET NX,
   TTL: a second delivery is a ``duplicate``, whichever producer process receives it) and, for
   a telephony event, merges every party of the event into its session's hash: a party's
   record is replaced only by a newer ``sequence`` (an older update still counts for "it
   answered" and "when it first appeared"). It returns the whole session as seen so far.
3. A call pop goes out only while its party still rings: the event is the newest seen for
   that party, the party has not answered and the call has not ended. One per (session,
   party): its once-key (SET NX, TTL).
4. A call log goes out once per call, whatever the order its events came in: when every party
   seen has ended, ``producers.telephony.decide`` names the one own party it is for. The
   decision (or "the call is open") is recorded under the settle window's supersede rule
   (``contact_lookup.core.supersede``, versioned by ``decision_version``): a new decision is
   sent with the countdown ``[telephony] settle_seconds`` and the token ``supersedeKey`` /
   ``decisionVersion``, and the worker runs only the newest one. The event that ends the call
   sends it, even when that event is about another party (its line then names the logged
   party's number).
5. Messages: one message log per message (once-key per message id).

Then a call pop whose answer is cached is published at once (``answered-from-cache``: one
GET and one PUBLISH more), and every other job is enqueued. When the broker refuses a job,
the keys this delivery set for the jobs not sent (and its delivery mark) are released and
``PipelineUnavailable`` is raised: the caller must not acknowledge, and the redelivery is
processed as if new. A Redis failure before the script ran leaves nothing to release.
"""

from __future__ import annotations

import logging
import time
import uuid as uuidlib
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

import redis
from celery import Celery
from kombu.exceptions import OperationalError

from contact_lookup import metrics
from contact_lookup.core import callpop, keys, supersede
from contact_lookup.core.request import LookupRequest
from contact_lookup.core.service import LookupService
from contact_lookup.model.config import Config
from contact_lookup.model.errors import ContactLookupError
from producers.events import Job, Plan, Skip, Step, call_log_job, plan
from producers.telephony import Decision, SessionView, decide, decision_version
from tasks.enqueue import enqueue

log = logging.getLogger(__name__)

DEDUPE_TTL_S = 86400
# Events older than this by their eventTime are stale (EVENT_MAX_AGE; README "Event rules").
MAX_EVENT_AGE_S = 21600.0
# Task ids derived from once-keys: a job re-sent after an ambiguous broker failure keeps its
# id, so the worker's idempotency (stored result by task id) makes the copy a no-op.
_TASK_NAMESPACE = uuidlib.UUID("5d1c8f0e-2b7a-4c1e-9a53-0c6f3e1b7d42")

# KEYS: delivery ('' when none), session hash ('' when none).
# ARGV: ttl seconds, the event's sequence ('' when none), then per party: id, record, '1' when
# this event shows it talking, '1' when it is an own party.
# Returns {'dup'} or {'ok', newest flag per party ('1'/'0'), then the session hash's fields
# and values}. A record is replaced only by an event at least as new; 'P|first' keeps the
# lowest sequence seen for P, 'P|answered' is set once P is seen talking and 'P|own' once P
# is seen as an own party (through any subscription), in any order.
_CHECK = """
local ttl = tonumber(ARGV[1])
if KEYS[1] ~= '' and not redis.call('SET', KEYS[1], '1', 'NX', 'EX', ttl) then
  return {'dup'}
end
local out = {'ok'}
if KEYS[2] == '' then return out end
local h = KEYS[2]
local seq = tonumber(ARGV[2])
for i = 3, #ARGV, 4 do
  local pid, rec, talking, own = ARGV[i], ARGV[i + 1], ARGV[i + 2], ARGV[i + 3]
  local cur = tonumber(redis.call('HGET', h, pid .. '|seq'))
  local newest = (cur == nil) or (seq == nil) or (seq >= cur)
  if newest then
    redis.call('HSET', h, pid, rec)
    if seq then redis.call('HSET', h, pid .. '|seq', seq) end
  end
  if seq then
    local first = tonumber(redis.call('HGET', h, pid .. '|first'))
    if first == nil or seq < first then redis.call('HSET', h, pid .. '|first', seq) end
  end
  if talking == '1' then redis.call('HSET', h, pid .. '|answered', '1') end
  if own == '1' then redis.call('HSET', h, pid .. '|own', '1') end
  table.insert(out, newest and '1' or '0')
end
redis.call('EXPIRE', h, ttl)
for _, v in ipairs(redis.call('HGETALL', h)) do table.insert(out, v) end
return out
"""


class PipelineUnavailable(Exception):
    """The broker or Redis failed: this delivery was not (fully) processed; do not ack it."""


@dataclass
class Outcome:
    """What became of one step: one output line of docs/interface.md section 4."""

    uuid: str | None
    action: str  # enqueued | answered-from-cache | duplicate | skipped
    purpose: str | None = None
    phone_number: str | None = None
    reason: str | None = None
    task_id: str | None = None
    message_type: str | None = None
    result: dict[str, Any] | None = None  # answered-from-cache only
    connection: str | None = None  # set by _run (Flower's cached-pop events name it)

    def line(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "uuid": self.uuid,
            "action": self.action,
            "purpose": self.purpose,
            "phoneNumber": self.phone_number,
            "reason": self.reason,
            "taskId": self.task_id,
        }
        if self.message_type:
            out["messageType"] = self.message_type
        return out


def _step_fields(step: Step) -> dict[str, Any]:
    o = step.outcome
    return {"purpose": o.purpose, "phone_number": o.phone_number, "message_type": o.message_type}


class EventPipeline:
    def __init__(
        self,
        client: redis.Redis,
        app: Celery,
        config: Config,
        service: LookupService,
        *,
        dedupe_ttl_s: int = DEDUPE_TTL_S,
        max_event_age_s: float = MAX_EVENT_AGE_S,
        clock: Callable[[], float] = time.time,
        state: redis.Redis | None = None,
    ) -> None:
        """``client``: the cache Redis (cached answers, call-pop PUBLISH); ``state``: the
        non-evicting Redis for delivery marks, session hashes and once-keys (STATE_URL;
        default ``client``): an evicted session would send a second call log."""
        self.redis = client
        self.state = state if state is not None else client
        self.app = app
        self.config = config
        self.service = service
        self.dedupe_ttl_s = int(dedupe_ttl_s)
        self.max_event_age_s = float(max_event_age_s)
        self.clock = clock
        # A recorded stream (replay --recorded): "now" is the newest eventTime read so far.
        self.recorded = False
        self._newest_event_time: float | None = None
        self._check = self.state.register_script(_CHECK)

    def handle(self, notification: Any, *, started: float | None = None) -> list[Outcome]:
        """The outcome of each step of one notification (one per own party or message), plus
        one line for the call log when this event ends a call whose logged party is not in it.

        ``started``: ``time.monotonic()`` when the delivery arrived (the call-pop latency
        metric of the cached path counts from it; default now).
        Raises PipelineUnavailable when a job could not be sent; keys are released first.
        """
        started = time.monotonic() if started is None else started
        p = plan(notification, self.config)
        stale = self._stale(p)
        if stale is not None:
            return [Outcome(p.uuid, "skipped", reason=stale, **_step_fields(s)) for s in p.steps]
        try:
            verdict = self._verdict(p)
            if verdict[0] == "dup":
                return [
                    Outcome(
                        p.uuid,
                        "duplicate",
                        reason="this delivery (uuid) was already processed",
                        **_step_fields(s),
                    )
                    for s in p.steps
                ]
            newest = {
                r.party_id: flag == "1"
                for r, flag in zip(p.parties, verdict[1 : 1 + len(p.parties)], strict=True)
            }
            rest = verdict[1 + len(p.parties) :]
            view = SessionView.from_hash(dict(zip(rest[::2], rest[1::2], strict=True)))
            decision = decide(view) if p.session else Decision(False)
            outcomes, to_run = self._decide_steps(p, newest, view, decision)
        except redis.RedisError as exc:
            raise PipelineUnavailable(f"Redis is unreachable: {type(exc).__name__}") from exc
        done = 0
        try:
            for index, job in to_run:
                outcomes[index] = self._run(p.uuid, job, started)
                done += 1
        except BaseException as exc:
            self._release(p, [job for _, job in to_run[done:]])
            if isinstance(exc, OperationalError | redis.RedisError):
                raise PipelineUnavailable(
                    f"the broker or Redis is unreachable: {type(exc).__name__}"
                ) from exc
            raise
        return outcomes

    def _stale(self, p: Plan) -> str | None:
        if p.event_time is None or not p.session:
            return None
        if self.recorded:
            newest = max(self._newest_event_time or p.event_time, p.event_time)
            self._newest_event_time = newest
            age = newest - p.event_time
        else:
            age = self.clock() - p.event_time
        if age <= self.max_event_age_s:
            return None
        return (
            f"stale: the event is {age:.0f} s old by its eventTime, beyond the "
            f"{self.max_event_age_s:g} s horizon (EVENT_MAX_AGE)"
        )

    def _claim(self, once_key: str | None) -> bool:
        """Take a job's once-key (SET NX, TTL); True when this delivery is the one to send it."""
        if not once_key:
            return True
        return bool(self.state.set(once_key, "1", nx=True, ex=self.dedupe_ttl_s))

    def _decide_steps(
        self, p: Plan, newest: dict[str, bool], view: SessionView, decision: Decision
    ) -> tuple[list[Outcome], list[tuple[int, Job]]]:
        outcomes: list[Outcome] = []
        to_run: list[tuple[int, Job]] = []
        winner = decision.party
        winner_step: int | None = None
        for step in p.steps:
            fields = _step_fields(step)
            job = step.outcome
            reason: str | None = None
            if isinstance(job, Skip):
                reason = job.reason
            elif job.purpose == "call_pop":
                reason = self._pop_blocked(p, step, newest, view, decision)
            elif job.purpose == "call_log" and p.session:
                is_winner = winner is not None and winner.party_id == step.party_id
                if not decision.ended:
                    reason = f"call log waits for the call to end ({decision.why})"
                elif winner is None:
                    reason = decision.why
                elif not is_winner:
                    reason = (
                        "the call's one call log is for another party of it "
                        f"({winner.party_id}): this party passed the call on"
                    )
                else:
                    winner_step = len(outcomes)
                    reason = "decided below"  # replaced by _settle's outcome
            if reason is None and isinstance(job, Job) and not self._claim(job.once_key):
                what = {
                    "call_pop": "a call pop for this party of the session",
                    "call_log": "a call log for this call",
                    "message_log": "a message log for this message",
                }[job.purpose]
                reason = f"already done: {what} was already sent"
            if reason is not None:
                outcomes.append(Outcome(p.uuid, "skipped", reason=reason, **fields))
            else:
                assert isinstance(job, Job)
                outcomes.append(Outcome(p.uuid, "enqueued", **fields))
                to_run.append((len(outcomes) - 1, job))
        if p.session:
            settled = self._settle(p.session, view, decision)
            if winner_step is not None:
                outcomes[winner_step] = self._settled_outcome(p, settled, outcomes[winner_step])
                if isinstance(settled[1], Job):
                    to_run.append((winner_step, settled[1]))
            elif isinstance(settled[1], Job):
                logged = settled[1]
                outcomes.append(
                    Outcome(
                        p.uuid, "enqueued", purpose="call_log", phone_number=logged.phone_number
                    )
                )
                to_run.append((len(outcomes) - 1, logged))
        return outcomes, to_run

    def _settle(
        self, session: str, view: SessionView, decision: Decision
    ) -> tuple[str, Job | Skip | None, int]:
        """Record this event's decision for the call under the supersede rule
        (``contact_lookup.core.supersede``): (verdict, the call-log job to send when the
        verdict is 'new' and it names a party with a job, else the skip or None, version).
        An open call is recorded too, so that a decision taken while the call seemed over is
        superseded when it goes on."""
        version = decision_version(view)
        logged: Job | Skip | None = None
        if not decision.ended:
            decided = ""
        elif decision.party is None:
            decided = "none"
        else:
            logged = call_log_job(session, decision.party.call_log)
            decided = ("" if isinstance(logged, Job) else "none:") + decision.party.party_id
        key = supersede.key(session)
        verdict = supersede.record(self.state, key, version, decided, self.dedupe_ttl_s)
        if isinstance(logged, Job):
            if verdict != "new":
                return verdict, None, version
            countdown = self.config.settle_seconds
            logged = replace(
                logged, supersede=(key, version, decided), countdown_s=countdown or None
            )
        return verdict, logged, version

    @staticmethod
    def _settled_outcome(
        p: Plan, settled: tuple[str, Job | Skip | None, int], outcome: Outcome
    ) -> Outcome:
        verdict, logged, version = settled
        if isinstance(logged, Job):
            return replace(outcome, action="enqueued", reason=None)
        if isinstance(logged, Skip) and verdict == "new":
            return replace(outcome, reason=logged.reason)
        why = {
            "same": "already done: a call log for this call was already sent for this same "
            "decision",
            "ran": "already done: a call log for this call already ran; later events do not "
            "change it",
        }.get(
            verdict,
            "already done: a call log for this call was already decided, from this state or "
            f"a newer one (decision version {version})",
        )
        return replace(outcome, reason=why)

    @staticmethod
    def _pop_blocked(
        p: Plan, step: Step, newest: dict[str, bool], view: SessionView, decision: Decision
    ) -> str | None:
        party = step.party_id
        if party is None or not p.session:
            return None
        if not newest.get(party, True):
            return (
                f"out of order: sequence {p.sequence} is older than the newest seen for this "
                "party, which no longer rings"
            )
        if party in view.answered or decision.ended:
            return "no longer ringing: the party has answered or the call has ended"
        return None

    def _verdict(self, p: Plan) -> list[str]:
        delivery = keys.delivery(p.uuid) if p.uuid else ""
        args: list[Any] = [self.dedupe_ttl_s, "" if p.sequence is None else p.sequence]
        for record in p.parties:
            talking = "1" if record.party_id in p.answered else "0"
            args += [record.party_id, record.encode(), talking, "1" if record.own else "0"]
        session_key = keys.telephony_session(p.session) if p.session else ""
        raw = self._check(keys=[delivery, session_key], args=args)
        return [v.decode() if isinstance(v, bytes) else str(v) for v in raw]

    def _run(self, uuid: str | None, job: Job, started: float) -> Outcome:
        query = LookupRequest(
            job.phone_number,
            purpose=job.purpose,
            is_extension=job.is_extension,
            user=job.rc_extension,  # that extension's own CRM grant, if it connected one
        )
        fields: dict[str, Any] = {
            "purpose": job.purpose,
            "phone_number": job.phone_number,
            "message_type": job.message_type,
            "connection": job.connection,
        }
        if job.purpose == "call_pop":
            try:
                cached = self.service.cached(job.connection, query)
            except ContactLookupError as exc:  # the plan validated it; a config change since
                return Outcome(uuid, "skipped", reason=exc.user_message(), **fields)
            if cached is not None:
                callpop.publish(
                    self.redis,
                    str(job.rc_account),
                    str(job.rc_extension),
                    job.telephony_session_id,
                    job.phone_number,
                    cached,
                )
                metrics.observe_call_pop("cached", time.monotonic() - started)
                metrics.count_lookup(job.purpose, job.connection, cached)
                return Outcome(uuid, "answered-from-cache", result=cached, **fields)
        once = job.once_key
        if once and job.supersede:  # one task per decision of the call
            once = f"{once}#{job.supersede[1]}"
        task_id = str(uuidlib.uuid5(_TASK_NAMESPACE, once)) if once else str(uuidlib.uuid4())
        enqueue(
            self.app,
            job.connection,
            query,
            call_pop=job.call_pop(),
            task_id=task_id,
            supersede=job.supersede[:2] if job.supersede else None,
            countdown_s=job.countdown_s,
        )
        return Outcome(uuid, "enqueued", task_id=task_id, **fields)

    def _release(self, p: Plan, unsent: list[Job]) -> None:
        """Forget this delivery and the once-keys of its unsent jobs, so a redelivery runs."""
        names = [j.once_key for j in unsent if j.once_key and not j.supersede]
        if p.uuid:
            names.append(keys.delivery(p.uuid))
        try:
            for job in unsent:
                if job.supersede:
                    supersede.release(self.state, *job.supersede)
            if names:
                self.state.delete(*names)
        except redis.RedisError:
            log.error(
                "delivery %s: could not release its dedupe keys; a redelivery will be "
                "taken for a duplicate",
                p.uuid,
            )

    def check(self) -> dict[str, str]:
        """Health of the two things a delivery needs: the state Redis and the broker."""
        status = {}
        try:
            self.redis.ping()
            self.state.ping()
            status["redis"] = "ok"
        except redis.RedisError as exc:
            status["redis"] = f"unreachable ({type(exc).__name__})"
        try:
            with self.app.connection_for_write() as conn:
                conn.ensure_connection(max_retries=1, timeout=2)
            status["broker"] = "ok"
        except Exception as exc:  # kombu raises transport-specific errors here
            status["broker"] = f"unreachable ({type(exc).__name__})"
        return status

    def forget_events(self) -> int:
        """Delete every delivery, session, sequence and once marker (replay --fresh)."""
        patterns = [
            keys.delivery("*"),
            keys.telephony_session("*"),
            keys.once("*"),
        ]
        deleted = 0
        for pattern in patterns:
            batch = list(self.state.scan_iter(pattern, count=500))
            for start in range(0, len(batch), 500):
                deleted += int(self.state.delete(*batch[start : start + 500]))
        return deleted


def build_pipeline(settings: Any) -> EventPipeline:
    """An EventPipeline wired from settings: state Redis (dedupe keys, session state, call-pop
    channel), Celery app, config and service. ``ConfigError`` when the state Redis may evict
    keys."""
    from contact_lookup.compose import Runtime
    from tasks.celery_app import create_app

    runtime = Runtime(settings)
    runtime.check_state_redis()
    return EventPipeline(
        runtime.state_redis,
        create_app(settings),
        runtime.config,
        runtime.service,
        max_event_age_s=settings.event_max_age_s,
    )
