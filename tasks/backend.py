"""The result backend: Celery's Redis backend, where a finished result is final.

Celery's key-value backend guards SUCCESS with a read followed by a write
(``KeyValueStoreBackend._store_result``: ``_get_task_meta_for`` then ``set``), so a worker
still handling a job's ``Retry`` can store RETRY *after* another worker ran the re-delivered
job and stored SUCCESS: the result is lost and a caller waiting on it waits for ever. Here
the check and the write are one Lua script (Redis runs a script atomically, "Atomicity of
scripts", https://redis.io/docs/latest/develop/interact/programmability/eval-intro/):

- a stored SUCCESS is never replaced, whatever comes later (RETRY, STARTED, REVOKED, FAILURE
  of a late duplicate);
- a stored FAILURE or REVOKED is replaced only by another finished state (``READY_STATES``):
  a re-delivered job that then succeeds says so, a late STARTED or RETRY never does;
- a write that is refused is not published either, so a caller waiting on the result's
  pub/sub channel never sees a state that was not stored.

Every exception text the backend stores (a RETRY's or FAILURE's ``exc_message`` and
traceback) goes through the process's redactor (``contact_lookup.model.redaction.PROCESS``):
a ``UnicodeEncodeError`` quotes the header value (a token) it could not encode. A rate-limit
deferral (``tasks.backoff.Deferred``) is stored without a traceback: it is not an error.
"""

from __future__ import annotations

import threading
from typing import Any

from celery import states
from celery.backends.redis import RedisBackend

from contact_lookup.model.redaction import PROCESS
from tasks.backoff import Deferred

# KEYS[1] the task's meta key; ARGV[1] the encoded meta, ARGV[2] its state, ARGV[3] TTL (s).
# Returns 1 when stored (and published), else the stored meta, whose state is final.
STORE_UNLESS_FINAL = """
local current = redis.call('GET', KEYS[1])
if current then
  local ok, meta = pcall(cjson.decode, current)
  if ok and type(meta) == 'table' then
    local old, new = meta['status'], ARGV[2]
    if old == 'SUCCESS' then return current end
    local ready = {SUCCESS = true, FAILURE = true, REVOKED = true}
    if ready[old] and not ready[new] then return current end
  end
end
local ttl = tonumber(ARGV[3])
if ttl and ttl > 0 then
  redis.call('SET', KEYS[1], ARGV[1], 'EX', ttl)
else
  redis.call('SET', KEYS[1], ARGV[1])
end
redis.call('PUBLISH', KEYS[1], ARGV[1])
return 1
"""


def redact_meta_text(result: Any) -> Any:
    """An encoded exception (``{"exc_type", "exc_message", "exc_module"}``) with every string
    of its message redacted; any other result unchanged."""
    if not isinstance(result, dict) or "exc_message" not in result:
        return result
    message = result["exc_message"]
    if isinstance(message, list | tuple):
        message = [PROCESS(m) if isinstance(m, str) else m for m in message]
    elif isinstance(message, str):
        message = PROCESS(message)
    return {**result, "exc_message": message}


class FinalResultBackend(RedisBackend):
    """``RedisBackend`` whose task states are stored by compare-and-set (module docstring).

    Built by ``tasks.celery_app.create_app`` for the ``RESULT_BACKEND`` URL (redis://,
    rediss://); reading results is Celery's own code, unchanged.
    """

    def __init__(self, *args: Any, url: str | None = None, **kwargs: Any) -> None:
        app = kwargs.get("app")
        if url is None and app is not None:
            url = app.conf.result_backend
        super().__init__(*args, url=url, **kwargs)
        self._store_unless_final = self.client.register_script(STORE_UNLESS_FINAL)
        # (task id, the meta that refused this thread's last STARTED write, or None when it
        # was stored): see ``stored_success``.
        self._started = threading.local()

    def stored_success(self, task_id: str) -> dict[str, Any] | None:
        """The stored SUCCESS meta of ``task_id``, or None.

        A worker thread stores STARTED (``task_track_started``) just before it runs the task,
        by the same script that refuses to overwrite a final state; when this thread's last
        STARTED write was for ``task_id``, its outcome answers without another read (stored:
        no SUCCESS was there; refused: the final meta it found). Else one GET.
        """
        last = getattr(self._started, "last", None)
        if last is not None and last[0] == task_id:
            self._started.last = None
            meta = last[1]
        else:
            meta = self.get_task_meta(task_id)
        if meta is not None and meta.get("status") == states.SUCCESS:
            return dict(meta)
        return None

    def store_result(
        self,
        task_id: str,
        result: Any,
        state: str,
        traceback: str | None = None,
        request: Any = None,
        **kwargs: Any,
    ) -> Any:
        if state in states.EXCEPTION_STATES:
            if isinstance(result, Deferred):
                traceback = None  # a deferral is not an error: no traceback to show
            elif traceback:
                traceback = PROCESS(traceback)
        return super().store_result(task_id, result, state, traceback, request, **kwargs)

    def encode_result(self, result: Any, state: str) -> Any:
        return redact_meta_text(super().encode_result(result, state))

    def _store_result(
        self,
        task_id: str,
        result: Any,
        state: str,
        traceback: str | None = None,
        request: Any = None,
        **kwargs: Any,
    ) -> Any:
        # Celery's version reads the stored state first and then writes (the race this
        # module closes); the script does both at once.
        meta = self._get_result_meta(
            result=result, state=state, traceback=traceback, request=request
        )
        meta["task_id"] = task_id if isinstance(task_id, str) else task_id.decode()
        if request is not None:
            # Without result_extended (celery_app.py) Celery stores none of these: ``retries``
            # tells relookup a job's successive RETRY states apart; ``queue`` and ``worker``
            # say where it ran. Its args and kwargs (a phone number) are left out.
            meta["retries"] = getattr(request, "retries", None)
            meta["worker"] = getattr(request, "hostname", None)
            info = getattr(request, "delivery_info", None) or {}
            meta["queue"] = info.get("routing_key")
        expires = self.failure_expires if state == states.FAILURE else self.expires
        refused = self.ensure(
            self._store_unless_final_now,
            (self.get_key_for_task(task_id), self.encode(meta), state, expires or 0),
        )
        if state == states.STARTED:
            final = self.decode_result(refused) if refused is not None else None
            self._started.last = (meta["task_id"], final)
        return result

    def _store_unless_final_now(
        self, key: bytes, value: Any, state: str, expires: int
    ) -> bytes | None:
        """None when stored, else the stored (final) meta that refused the write."""
        reply = self._store_unless_final(keys=[key], args=[value, state, int(expires)])
        return None if reply == 1 else reply
