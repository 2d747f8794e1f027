"""Why a lookup is made: the spec's purposes, one Celery queue each.

The one place that names them. ``Purpose`` is a ``StrEnum``, so a member equals its value
(``Purpose.CALL_POP == "call_pop"``) and crosses JSON (task kwargs, results) as that string.
Source: docs/interface.md, "Purposes and queues".
"""

from __future__ import annotations

from enum import StrEnum


class Purpose(StrEnum):
    CALL_POP = "call_pop"  # the phone is ringing: latency-critical, has the limiter's reserve
    CALL_LOG = "call_log"  # a finished call is being logged
    MESSAGE_LOG = "message_log"  # an SMS, fax or pager message is being logged
    RELOOKUP = "relookup"  # a batch re-lookup

    @property
    def queue(self) -> str:
        """The Celery queue this purpose's jobs go to (one queue per purpose)."""
        return self.value

    @property
    def is_logging(self) -> bool:
        """Call and message logging: the connection's ``resolve`` strategy applies."""
        return self in (Purpose.CALL_LOG, Purpose.MESSAGE_LOG)

    @property
    def has_priority(self) -> bool:
        """Call pops may use the rate limiter's reserve; other purposes may not."""
        return self is Purpose.CALL_POP

    @classmethod
    def parse(cls, value: object) -> Purpose:
        """The member named by ``value``; ``ValueError`` naming the valid ones otherwise."""
        try:
            return cls(str(value))
        except ValueError:
            raise ValueError(
                f"unknown purpose {value!r}; use one of {', '.join(p.value for p in cls)}"
            ) from None


PURPOSES: tuple[str, ...] = tuple(p.value for p in Purpose)
