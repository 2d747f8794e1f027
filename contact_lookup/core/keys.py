"""Every Redis key and channel name, built in one place: namespaced and versioned.

Bump ``VERSION`` when a stored value's shape changes, so old entries are ignored, not misread.
"""

from __future__ import annotations

import hashlib

PREFIX = "cl"
VERSION = "v1"


def _key(*parts: str) -> str:
    return ":".join((PREFIX, VERSION, *parts))


def _digest(text: str) -> str:
    # Long or user-written parts (format strings, base URLs) are hashed so keys stay short and
    # free of separators.
    return hashlib.sha1(text.encode(), usedforsecurity=False).hexdigest()[:12]


def contacts(rc_account: str, connection: str, instance: str, number: str, formats: str) -> str:
    """The cached contacts of one number in one CRM instance, for one set of formats."""
    return _key(
        "contacts", rc_account or "-", connection, _digest(instance), number, _digest(formats)
    )


def delivery(uuid: str) -> str:
    """Marks a RingCentral notification uuid as seen (deduplication)."""
    return _key("delivery", uuid)


def telephony_session(session_id: str) -> str:
    """Hash of a telephony session's parties as seen so far (producers/pipeline.py): per party
    its latest record, ``|seq``, ``|first``, ``|answered`` and ``|own`` fields."""
    return _key("call", session_id)


def once(kind: str, *parts: str) -> str:
    """A job that must happen once per identity (a call pop per party, a call log per call)."""
    return _key("once", kind, *parts)


def rate_bucket(connection: str, instance: str) -> str:
    """Shared rate-limit state of one CRM connection."""
    return _key("rate", connection, _digest(instance))


def rate_block(connection: str, instance: str) -> str:
    """Epoch second until which the CRM told us to hold off (429, or remaining 0 with a reset)."""
    return _key("rate", connection, _digest(instance), "block")


def rate_vendor(connection: str, instance: str) -> str:
    """Hash of what the CRM announced of its own limit: ``amount``, ``remaining``, ``reset``
    (epoch seconds). Kept an hour after the last response, so a new window starts from the
    vendor's amount instead of the configured budget."""
    return _key("rate", connection, _digest(instance), "vendor")


def coalesce(name: str) -> str:
    """In-flight marker and result slot for one (connection, number, formats) lookup."""
    return _key("inflight", name)


def coalesce_result(name: str, token: str) -> str:
    """The result one leader (``token``) of an in-flight lookup left for its followers."""
    return _key("inflight", name, token, "result")


def coalesce_wake(name: str, token: str) -> str:
    """The list a leader pushes to when its result is ready; followers block on it."""
    return _key("inflight", name, token, "wake")


def callpop_channel(rc_account: str, rc_extension: str) -> str:
    """Pub/sub channel of docs/interface.md section 7 (unversioned: it is a public contract)."""
    return f"callpop:{rc_account}:{rc_extension}"


def auth_tokens(connection: str, user: str | None = None) -> str:
    """The token store's record of one connection's OAuth grant (``user``: a RingCentral
    extension whose CRM user connected on their own; None: the connection's own tokens).
    Lives on STATE_URL, never the LRU cache: losing it would need a person to reconnect."""
    return _key("auth", connection, user or "-")


def auth_lock(connection: str, user: str | None = None) -> str:
    """The refresh lock of one grant: one refresh at a time across every worker and host."""
    return _key("auth", connection, user or "-", "lock")


def auth_probe(connection: str, user: str | None = None) -> str:
    """Set while a revoked grant may not be tried again at the token endpoint (one a minute)."""
    return _key("auth", connection, user or "-", "probe")


def relookup_jobs(out_path: str) -> str:
    """The task ids still outstanding of the relookup batch writing ``out_path`` (a set)."""
    return _key("relookup", _digest(out_path), "jobs")


def relookup_active(out_path: str) -> str:
    """Set while a relookup batch writes ``out_path``, from its start to its end (``--cancel``
    tells a batch it can stop from a file no batch writes)."""
    return _key("relookup", _digest(out_path), "active")


def relookup_cancel(out_path: str) -> str:
    """Set by ``relookup --cancel OUT``: the batch writing ``out_path`` stops at its next poll."""
    return _key("relookup", _digest(out_path), "cancel")
