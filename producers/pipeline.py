"""The stateful producer: a notification's plan -> deduplicated, ordered jobs on the queues.

One ``EventPipeline`` serves the webhook, ``replay`` and the demo. For each notification it runs
one Lua script on the state Redis (STATE_URL, never evicting) that, atomically:

1. marks the delivery ``uuid`` as seen (SET NX, TTL): a second delivery is a ``duplicate``,
   whichever producer process receives it;
2. marks the telephony session as seen live (an event where some party is not Disconnected):
   an event whose parties are all Disconnected, for a session never seen live, is stale (its
   copies from other subscriptions too);
3. per party, compares the event's ``sequence`` with the newest seen (compare-and-set): an
   older update is ignored;
4. per job, sets its once-key (SET NX, TTL): one call pop per (session, party), one call log
   per (session, extension), one message log per message, however many events arrive.

Then a call pop whose answer is cached is published at once (``answered-from-cache``), in the
same script when the events' Redis is the cache's (producers/fastpath.py: one round trip in
all), else with one GET and one PUBLISH more; every other job is enqueued. When the broker
refuses a job, the keys this delivery set for the jobs not sent (and its delivery mark) are
released and ``PipelineUnavailable`` is raised: the caller must not acknowledge, and the
redelivery is processed as if new. A Redis failure before the script ran leaves nothing to release.
"""

from __future__ import annotations

import logging
import time
import uuid as uuidlib
from dataclasses import dataclass
from typing import Any

import redis
from celery import Celery
from kombu.exceptions import OperationalError

from contact_lookup import metrics
from contact_lookup.core import callpop, keys
from contact_lookup.core.request import LookupRequest
from contact_lookup.core.service import LookupService
from contact_lookup.model.config import Config
from contact_lookup.model.errors import ContactLookupError
from producers.events import Job, Plan, Skip, Step, plan
from producers.fastpath import POPPED, FastPath, PopTemplate, template
from tasks.enqueue import enqueue

log = logging.getLogger(__name__)

DEDUPE_TTL_S = 86400
# Task ids derived from once-keys: a job re-sent after an ambiguous broker failure keeps its
# id, so the worker's idempotency (stored result by task id) makes the copy a no-op.
_TASK_NAMESPACE = uuidlib.UUID("5d1c8f0e-2b7a-4c1e-9a53-0c6f3e1b7d42")

# KEYS: delivery, session, then (sequence, once) per step; '' where there is none.
# ARGV: ttl seconds, the event's sequence ('' when none), '1' when every party is Disconnected.
# Returns {'dup'} or {'ok'|'stale', verdict per step}; a verdict is 'go' (the job's once-key
# was free and is now set, or the step has none), 'done' (once-key already set) or 'old:N'
# (older than the newest sequence N seen for that party).
_CHECK = """
local ttl = tonumber(ARGV[1])
if KEYS[1] ~= '' and not redis.call('SET', KEYS[1], '1', 'NX', 'EX', ttl) then
  return {'dup'}
end
local state = 'ok'
if KEYS[2] ~= '' then
  if ARGV[3] ~= '1' then
    redis.call('SET', KEYS[2], '1', 'EX', ttl)
  elseif redis.call('EXISTS', KEYS[2]) == 0 then
    state = 'stale'
  end
end
local out = {state}
local seq = tonumber(ARGV[2])
for i = 3, #KEYS, 2 do
  local verdict = 'go'
  local seq_key, once_key = KEYS[i], KEYS[i + 1]
  if seq and seq_key ~= '' then
    local newest = tonumber(redis.call('GET', seq_key))
    if newest and seq < newest then
      verdict = 'old:' .. newest
    else
      redis.call('SET', seq_key, seq, 'EX', ttl)
    end
  end
  if verdict == 'go' and state == 'ok' and once_key ~= '' then
    if not redis.call('SET', once_key, '1', 'NX', 'EX', ttl) then verdict = 'done' end
  end
  table.insert(out, verdict)
end
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
    ) -> None:
        self.redis = client
        self.app = app
        self.config = config
        self.service = service
        self.dedupe_ttl_s = int(dedupe_ttl_s)
        self._check = client.register_script(_CHECK)
        # One round trip for the checks and the cached call pops (producers/fastpath.py),
        # when the events' Redis is the cache's.
        self._fast = FastPath(client, _CHECK) if service.cache.redis is client else None

    def handle(self, notification: Any, *, started: float | None = None) -> list[Outcome]:
        """The outcome of each step of one notification (one per own party or message).

        ``started``: ``time.monotonic()`` when the delivery arrived (the call-pop latency
        metric of the cached path counts from it; default now).
        Raises PipelineUnavailable when a job could not be sent; keys are released first.
        """
        started = time.monotonic() if started is None else started
        p = plan(notification, self.config)
        templates = self._templates(p)
        try:
            verdict = self._verdict(p, templates)
        except redis.RedisError as exc:
            raise PipelineUnavailable(f"Redis is unreachable: {type(exc).__name__}") from exc
        state, per_step = verdict[0], verdict[1:]
        if state == "dup":
            return [
                Outcome(
                    p.uuid,
                    "duplicate",
                    reason="this delivery (uuid) was already processed",
                    **_step_fields(s),
                )
                for s in p.steps
            ]
        outcomes: list[Outcome] = []
        to_run: list[tuple[int, Job]] = []
        for index, (step, v) in enumerate(zip(p.steps, per_step, strict=True)):
            popped = self._popped(p.uuid, step, v, templates[index])
            reason = None if popped else self._skip_reason(p, step, state, v)
            if popped is not None:
                assert isinstance(step.outcome, Job) and popped.result is not None
                metrics.observe_call_pop("cached", time.monotonic() - started)
                metrics.count_lookup(step.outcome.purpose, step.outcome.connection, popped.result)
                outcomes.append(popped)
            elif reason is not None:
                outcomes.append(Outcome(p.uuid, "skipped", reason=reason, **_step_fields(step)))
            else:
                assert isinstance(step.outcome, Job)
                outcomes.append(Outcome(p.uuid, "enqueued", **_step_fields(step)))
                to_run.append((index, step.outcome))
        done = 0
        try:
            for index, job in to_run:
                # A templated call pop that was not popped was a cache miss: no second GET.
                outcomes[index] = self._run(
                    p.uuid, job, started, check_cache=templates[index] is None
                )
                done += 1
        except BaseException as exc:
            self._release(p, [job for _, job in to_run[done:]])
            if isinstance(exc, OperationalError | redis.RedisError):
                raise PipelineUnavailable(
                    f"the broker or Redis is unreachable: {type(exc).__name__}"
                ) from exc
            raise
        return outcomes

    def _templates(self, p: Plan) -> list[PopTemplate | None]:
        """Per step, the fast path's call-pop template, or None (no fast path for it)."""
        out: list[PopTemplate | None] = []
        for step in p.steps:
            job = step.outcome
            t = None
            if self._fast is not None and isinstance(job, Job) and job.purpose == "call_pop":
                query = LookupRequest(job.phone_number, purpose=job.purpose,
                                      is_extension=job.is_extension)  # fmt: skip
                try:
                    t = template(
                        self.service,
                        job.connection,
                        query,
                        rc_account=str(job.rc_account),
                        rc_extension=str(job.rc_extension),
                        telephony_session_id=job.telephony_session_id,
                    )
                except ContactLookupError:
                    t = None  # _run reports why it is skipped
            out.append(t)
        return out

    def _popped(
        self, uuid: str | None, step: Step, verdict: str, t: PopTemplate | None
    ) -> Outcome | None:
        if t is None or not verdict.startswith(POPPED):
            return None
        return Outcome(uuid, "answered-from-cache", result=t.result(verdict[len(POPPED) :]),
                       **_step_fields(step))  # fmt: skip

    def _verdict(self, p: Plan, templates: list[PopTemplate | None]) -> list[str]:
        delivery = keys.delivery(p.uuid) if p.uuid else ""
        step_keys: list[str] = []
        for step in p.steps:
            once = step.outcome.once_key if isinstance(step.outcome, Job) else None
            step_keys += [step.sequence_key or "", once or ""]
        script_keys = [delivery, p.session_key or "", *step_keys]
        args = [
            self.dedupe_ttl_s,
            "" if p.sequence is None else p.sequence,
            "1" if p.all_disconnected else "0",
        ]
        if self._fast is not None and any(templates):
            return self._fast.run(script_keys, args, templates)
        raw = self._check(keys=script_keys, args=args)
        return [v.decode() if isinstance(v, bytes) else str(v) for v in raw]

    @staticmethod
    def _skip_reason(p: Plan, step: Step, state: str, verdict: str) -> str | None:
        if state == "stale":
            return (
                "stale: the session was never seen before every party disconnected "
                "(a late or replayed event)"
            )
        if verdict.startswith("old:"):
            return (
                f"out of order: sequence {p.sequence} is older than the newest seen "
                f"({verdict[4:]}) for this party"
            )
        if isinstance(step.outcome, Skip):
            return step.outcome.reason
        if verdict == "done":
            what = {
                "call_pop": "a call pop for this party of the session",
                "call_log": "a call log for this extension's call",
                "message_log": "a message log for this message",
            }[step.outcome.purpose]
            return f"already done: {what} was already sent"
        return None

    def _run(
        self, uuid: str | None, job: Job, started: float, *, check_cache: bool = True
    ) -> Outcome:
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
        }
        if job.purpose == "call_pop" and check_cache:
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
        task_id = (
            str(uuidlib.uuid5(_TASK_NAMESPACE, job.once_key))
            if job.once_key
            else str(uuidlib.uuid4())
        )
        enqueue(self.app, job.connection, query, call_pop=job.call_pop(), task_id=task_id)
        return Outcome(uuid, "enqueued", task_id=task_id, **fields)

    def _release(self, p: Plan, unsent: list[Job]) -> None:
        """Forget this delivery and the once-keys of its unsent jobs, so a redelivery runs."""
        names = [j.once_key for j in unsent if j.once_key]
        if p.uuid:
            names.append(keys.delivery(p.uuid))
        if not names:
            return
        try:
            self.redis.delete(*names)
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
            keys.party_sequence("*", "*"),
            keys.once("*"),
        ]
        deleted = 0
        for pattern in patterns:
            batch = list(self.redis.scan_iter(pattern, count=500))
            for start in range(0, len(batch), 500):
                deleted += int(self.redis.delete(*batch[start : start + 500]))
        return deleted


def build_pipeline(settings: Any) -> EventPipeline:
    """An EventPipeline wired from settings: state Redis (dedupe keys, call-pop channel), Celery
    app, config and service. ``ConfigError`` when the state Redis may evict keys."""
    from contact_lookup.compose import Runtime
    from tasks.celery_app import create_app

    runtime = Runtime(settings)
    runtime.check_state_redis()
    return EventPipeline(runtime.state_redis, create_app(settings), runtime.config, runtime.service)
