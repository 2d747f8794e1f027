"""What one findContact call asks for, and the validated form the core works with.

``LookupRequest`` is the spec's input (docs/interface.md, "findContact inputs") minus what the
connection provides; ``Prepared`` is a request checked against its connection: the E.164
number, the search terms to send (spec: E.164 first, then each format) and the cache key.
"""

from __future__ import annotations

from dataclasses import dataclass

from contact_lookup.model.config import Connection
from contact_lookup.model.purpose import Purpose


@dataclass(frozen=True)
class LookupRequest:
    """One findContact request.

    - ``phone_number``: as the caller gave it (usually E.164; spec "phoneNumber").
    - ``purpose``: why it is looked up (``Purpose``; a plain string is accepted and checked).
    - ``overriding_format``: comma-separated formats (spec "overridingFormat"); None uses the
      connection's own ``formats``.
    - ``is_extension``: an internal extension number (spec "isExtension").
    - ``force_refresh``: bypass the cache read (spec "isForceRefreshAccountData").
    - ``debug``: attach a redacted ``debugTrace`` to the result.
    - ``resolve``: a resolution strategy name, or None for the connection's default.
    - ``user``: the RingCentral extension the job is for (spec "user": the connected CRM
      user). Its own OAuth grant is used when one is stored (``auth connect --extension``),
      else the connection's. The cache stays per RingCentral account.
    """

    phone_number: str
    purpose: str = Purpose.CALL_POP
    overriding_format: str | None = None  # None: the connection's own formats
    is_extension: bool = False
    force_refresh: bool = False
    debug: bool = False
    resolve: str | None = None
    user: str | None = None


@dataclass(frozen=True)
class Prepared:
    """A validated request: what to ask the CRM and where its answer is cached.

    ``terms`` are the search terms, in the spec's order (E.164 first, then formats).
    """

    connection: Connection
    number: str
    terms: list[str]
    cache_key: str
