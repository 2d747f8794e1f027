"""The connector contract: the promises every connector keeps, as a reusable pytest suite.

The built-in connectors run it (tests/contract/test_contract.py), the shipped REST templates
run it (tests/contract/test_rest_templates.py), and so can any plugin package::

    import pytest
    from contact_lookup.testing.contract import SEED, ConnectorContract, Harness

    class TestAcme(ConnectorContract):
        @pytest.fixture
        def harness(self, tmp_path):
            sim = AcmeSimulator(SEED, token="t").start()     # your simulator, seeded with SEED
            yield Harness("acme", {"crm": "acme", "base_url": sim.url, "token_env": "ACME_TOKEN"},
                          {"ACME_TOKEN": "t"}, tmp_path, sim)
            sim.stop()

Or, with nothing but the connector and the URL of a simulator running anywhere (another
process, another language)::

    class TestAcmeFromUrl(ConnectorContract):
        @pytest.fixture
        def harness(self, tmp_path):
            return Harness.from_url(AcmeConnector, "http://127.0.0.1:8123", tmp_path)

``from_url`` drives the simulator through the contract's control protocol (documented in
``crmsim/control.py`` and docs/connectors.md: ``POST /_contract/seed``, ``/_contract/fault``,
``/_contract/rate_limit``, ``/_contract/reset``, ``GET /_contract/state``): it seeds ``SEED``
and the test token before each test, and the cases that force faults, 429s and rate limits
go through it. Every case runs; one skips only when the simulator answers 404 on the
endpoint it needs, and the skip reason names that endpoint.

``SEED`` (contacts.json beside this module) is the spec-shaped contact list the simulator must
serve in its vendor's shape; the expected answers below were worked out from it by hand. The
``sim`` object is duck-typed (``Vendor``): a simulator object that cannot inject faults or set
a rate limit skips those tests instead of failing them; the ``crmsim`` simulators can do all
of it.
The service tests need a Redis (``CONTRACT_REDIS_URL`` or ``REDIS_URL``, database 14, flushed):
they skip without one, and fail under CI (``CI`` set).

What is checked: matching through formats, shared numbers and second numbers, de-duplication,
the spec's contact shape, date normalisation to ISO 8601 UTC, errors (AuthRejected,
CRMUnavailable for 5xx, hangs and broken bodies, RateLimited with the vendor's wait), the
newest rate-limit state, a redacted debug trace with one entry per request, and the lookup
service around the connector (cache, failure never an empty success).
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import urlsplit, urlunsplit

import pytest
import redis

from contact_lookup.connectors.base import Connector, FindOutcome
from contact_lookup.connectors.registry import ConnectorFactory
from contact_lookup.core.cache import ContactCache
from contact_lookup.core.request import LookupRequest
from contact_lookup.core.service import LookupService
from contact_lookup.model import phone
from contact_lookup.model.config import Connection, parse_config
from contact_lookup.model.contact import FIELDS as CONTACT_FIELDS
from contact_lookup.model.errors import AuthRejected, CRMUnavailable, RateLimited
from contact_lookup.model.trace import DebugTrace
from contact_lookup.testing.remote import RemoteSimulator

SEED = Path(__file__).with_name("contacts.json")
# Distinctive, so that its absence from a trace or a result means something.
SECRET = "ctk-5b1e0f9a2d7c4e83"  # noqa: S105 (a test canary, not a credential)
CONNECTION = "contract"
CLIENT_TIMEOUT_S = 2.0  # generous for localhost, still fails fast on a hung test
HANG_S = 1.5  # how long the simulator's "timeout" fault should hold a request

FORMATTED_ONLY = "+14155550100"  # Ada Lovelace, stored only as "(415) 555-0100"
TWO_FORMATS = "+14155550123"  # Grace Hopper, stored as "+14155550123" and "415-555-0123"
SHARED = "+14155550177"  # Alan Turing and Barbara Liskov
TWO_NUMBERS = ("+14155550188", "+14155550199")  # Edsger Dijkstra's two numbers
LEAD_SECOND = "+14155550144"  # Katherine Johnson (a Lead), her second number
ABROAD = "+442079460958"  # Margaret Hamilton
NOBODY = "+14155550111"
US_FORMATS = "(***) ***-****, ***-***-****"

# Worked out by hand from SEED: ``date -u -d @1546300800`` is 2019-01-01T00:00:00Z,
# @1420070400 is 2015-01-01T00:00:00Z, @1600000000 is 2020-09-13T12:26:40Z; 08:00 at +02:00
# is 06:00Z.
EXPECTED_CREATED = {
    "Ada Lovelace": "2021-03-04T10:00:00Z",
    "Grace Hopper": "2019-07-01T06:00:00Z",
    "Alan Turing": "2019-01-01T00:00:00Z",
    "Barbara Liskov": "2015-01-01T00:00:00Z",
    "Edsger Dijkstra": "2018-01-05T00:00:00Z",
    "Katherine Johnson": "2020-09-13T12:26:40Z",
    "Margaret Hamilton": "2017-03-15T09:30:00Z",
}
SPEC_FIELDS = frozenset(CONTACT_FIELDS)  # the spec's contact fields


class Vendor(Protocol):
    """What the contract uses of a simulator (the ``crmsim`` simulators have all of it).

    ``inject(fault)``: answer the next request with ``"500"``, ``"503"``, ``"timeout"`` (hold
    it ``HANG_S``), ``"malformed"`` or ``"truncated"``; ``force_rate_limited(count,
    retry_after_s)``: the vendor's rate-limit answer; ``set_rate_limit((requests, seconds))``;
    ``reset_counters()``; ``requests`` and ``rate_limited`` counters; ``token_env``;
    ``rate_limit_headers(state)``: the headers it sends for a window state (empty: none).
    """

    requests: int
    rate_limited: int
    token_env: str


@dataclass
class WindowProbe:
    """A rate-limit window state, to ask a simulator which headers it would send."""

    limit: int = 1
    remaining: int = 0
    window_s: float = 1.0
    reset_at: float = field(default_factory=lambda: time.time() + 1)
    allowed: bool = True

    @property
    def retry_after_s(self) -> float:
        return 1.0


@dataclass
class Harness:
    """One connector under test: its connection table, environment and simulator (or None)."""

    crm: str
    table: dict[str, Any]
    env: dict[str, str]
    base_dir: Path
    sim: Any = None  # a Vendor
    _factory: ConnectorFactory | None = field(default=None, repr=False)

    @classmethod
    def from_url(
        cls,
        connector: type[Connector] | str,
        url: str,
        base_dir: Path,
        token_env: str = "CONTRACT_CRM_TOKEN",  # noqa: S107 (a variable name, not a secret)
        **options: Any,
    ) -> Harness:
        """A harness for ``connector`` (a class, or its ``crm`` name) against the simulator at
        ``url``, seeded with ``SEED`` and the token ``SECRET`` through the control protocol
        (``contact_lookup.testing.remote``); ``options``: further keys of the connection."""
        crm = (
            connector
            if isinstance(connector, str)
            else f"{connector.__module__}:{connector.__qualname__}"
        )
        remote = RemoteSimulator(url, token_env, HANG_S)
        remote.seed(SEED, SECRET)
        table = {"crm": crm, "base_url": remote.url, "token_env": token_env, **options}
        return cls(crm, table, {token_env: SECRET}, base_dir, remote)

    # ----- building ------------------------------------------------------------------------
    def connection(self, **overrides: Any) -> Connection:
        table = {"rc_account": "contract-account", **self.table, **overrides}
        config = parse_config({"connections": {CONNECTION: table}}, self.base_dir)
        return config.connection(CONNECTION)

    def factory(
        self, *, timeout_s: float = CLIENT_TIMEOUT_S, env: Mapping[str, str] | None = None
    ) -> ConnectorFactory:
        return ConnectorFactory(env=dict(self.env if env is None else env), timeout_s=timeout_s)

    @property
    def default_factory(self) -> ConnectorFactory:
        """One factory per test, so per-connection state (``shared``) lives across lookups."""
        if self._factory is None:
            self._factory = self.factory()
        return self._factory

    def connector(
        self,
        *,
        trace: DebugTrace | None = None,
        factory: ConnectorFactory | None = None,
        **overrides: Any,
    ) -> Connector:
        return (factory or self.default_factory).build(self.connection(**overrides), trace)

    def service(self, client: redis.Redis, **overrides: Any) -> LookupService:
        table = {"rc_account": "contract-account", **self.table, **overrides}
        config = parse_config({"connections": {CONNECTION: table}}, self.base_dir)
        return LookupService(config, ContactCache(client, ttl_s=60), self.default_factory)

    # ----- running -------------------------------------------------------------------------
    def find(
        self,
        number: str,
        formats: str = "",
        *,
        trace: DebugTrace | None = None,
        factory: ConnectorFactory | None = None,
    ) -> FindOutcome:
        """The connector's answer for one number, planned as the service plans it."""
        queries = phone.queries(phone.to_e164(number), formats)
        return self.connector(trace=trace, factory=factory).find(queries)

    # ----- what some tests need ------------------------------------------------------------
    @property
    def vendor(self) -> Any:
        if self.sim is None:
            pytest.skip("no simulator (a file-backed connector): skipped")
        return self.sim

    def can(self, ability: str) -> Any:
        """The simulator's method ``ability``; skips the test when it has none."""
        method = getattr(self.vendor, ability, None)
        if method is None:
            pytest.skip(f"the {self.crm} simulator has no {ability}()")
        return method

    def wrong_env(self) -> dict[str, str]:
        return {**self.env, self.vendor.token_env: "not-the-token"}

    def require_rate_limit_headers(self) -> None:
        if not self.can("rate_limit_headers")(WindowProbe()):
            pytest.skip(f"{getattr(self.sim, 'name', self.crm)} documents no rate-limit headers")


def names(outcome: FindOutcome) -> list[str]:
    return [c["name"] for c in outcome.contacts]


def contract_redis() -> Iterator[redis.Redis]:
    """A real Redis, database 14, flushed before and after. Skips locally, fails under CI."""
    url = os.environ.get("CONTRACT_REDIS_URL") or os.environ.get("REDIS_URL")
    if not url:
        if os.environ.get("CI"):
            pytest.fail("a Redis is required under CI: set CONTRACT_REDIS_URL or REDIS_URL")
        pytest.skip("no Redis: set CONTRACT_REDIS_URL or REDIS_URL")
    parts = urlsplit(url)
    if parts.scheme in ("redis", "rediss"):
        # A database in the URL path would win over db=14 in redis-py: strip it.
        url = urlunsplit(parts._replace(path=""))
    client = redis.Redis.from_url(url, db=14)
    where = f"{parts.hostname}:{parts.port or 6379}"  # never the URL: it may hold a password
    try:
        client.ping()
    except redis.RedisError as exc:
        if os.environ.get("CI"):
            pytest.fail(f"Redis at {where} is required under CI: {exc}")
        pytest.skip(f"no Redis at {where}: {exc}")
    client.flushdb()
    yield client
    client.flushdb()
    client.close()


class ConnectorContract:
    """The contract tests. Subclass it as ``Test...`` and provide a ``harness`` fixture."""

    @pytest.fixture
    def redis_db(self) -> Iterator[redis.Redis]:
        yield from contract_redis()

    # ----- matching ----------------------------------------------------------------------------
    def test_number_stored_only_formatted_is_found_through_its_format(
        self, harness: Harness
    ) -> None:
        assert names(harness.find(FORMATTED_ONLY, "(***) ***-****")) == ["Ada Lovelace"]

    def test_shared_number_returns_every_contact(self, harness: Harness) -> None:
        assert sorted(names(harness.find(SHARED))) == ["Alan Turing", "Barbara Liskov"]

    @pytest.mark.parametrize("number", TWO_NUMBERS)
    def test_contact_with_two_numbers_is_found_by_either(
        self, harness: Harness, number: str
    ) -> None:
        assert names(harness.find(number)) == ["Edsger Dijkstra"]

    def test_lead_is_found_by_its_second_number(self, harness: Harness) -> None:
        assert names(harness.find(LEAD_SECOND)) == ["Katherine Johnson"]

    def test_contact_found_by_two_formats_appears_once(self, harness: Harness) -> None:
        outcome = harness.find(TWO_FORMATS, "***-***-****")
        assert names(outcome) == ["Grace Hopper"]
        ids = [c["id"] for c in outcome.contacts]
        assert len(ids) == len(set(ids))

    def test_no_match_is_an_empty_list_not_an_error(self, harness: Harness) -> None:
        assert harness.find(NOBODY, US_FORMATS).contacts == []

    def test_every_contact_comes_back_in_the_spec_shape(self, harness: Harness) -> None:
        outcome = harness.find(FORMATTED_ONLY, "(***) ***-****")
        (ada,) = outcome.contacts
        assert isinstance(ada["id"], str) and ada["id"]
        # The matched number: as stored, or the query that found it (token-matching CRMs).
        assert ada["phone"] in {"(415) 555-0100", *outcome.queries, FORMATTED_ONLY}
        assert set(ada) >= SPEC_FIELDS
        # The values, not just the keys (the model fills every key): what the CRM holds for
        # the seed's Ada Lovelace comes back, each field mapped from the vendor's own name.
        assert ada["name"] == "Ada Lovelace"
        assert ada["createdDate"] == "2021-03-04T10:00:00Z"
        assert ada["email"] in (None, "ada@example.com")  # None: the CRM has no e-mail field
        assert ada["company"] in (None, "Engines Ltd")
        assert isinstance(ada["type"], str) and ada["type"]
        assert ada["additionalInfo"] is None or isinstance(ada["additionalInfo"], dict)

    # ----- dates -------------------------------------------------------------------------------
    def test_created_date_is_normalised_to_iso_utc(self, harness: Harness) -> None:
        found: dict[str, str] = {}
        for number in (FORMATTED_ONLY, TWO_FORMATS, SHARED, *TWO_NUMBERS, LEAD_SECOND, ABROAD):
            for contact in harness.find(number, US_FORMATS).contacts:
                found[contact["name"]] = contact["createdDate"]
        assert found == EXPECTED_CREATED

    # ----- failures ----------------------------------------------------------------------------
    def test_wrong_token_is_auth_rejected(self, harness: Harness) -> None:
        with pytest.raises(AuthRejected):
            harness.find(SHARED, factory=harness.factory(env=harness.wrong_env()))

    @pytest.mark.parametrize("fault", ["500", "503"])
    def test_server_error_is_crm_unavailable(self, harness: Harness, fault: str) -> None:
        harness.can("inject")(fault)
        with pytest.raises(CRMUnavailable) as info:
            harness.find(SHARED)
        assert info.value.status_code == int(fault)

    def test_hung_server_is_crm_unavailable_within_the_client_timeout(
        self, harness: Harness
    ) -> None:
        harness.can("inject")("timeout")
        started = time.monotonic()
        with pytest.raises(CRMUnavailable):
            harness.find(SHARED, factory=harness.factory(timeout_s=0.5))
        # Gave up on its own timeout, not because the simulator let go.
        assert time.monotonic() - started < HANG_S

    @pytest.mark.parametrize("fault", ["malformed", "truncated"])
    def test_broken_body_is_crm_unavailable(self, harness: Harness, fault: str) -> None:
        harness.can("inject")(fault)
        with pytest.raises(CRMUnavailable):
            harness.find(SHARED)

    # ----- rate limits -------------------------------------------------------------------------
    def test_rate_limit_state_is_the_newest_the_crm_reported(self, harness: Harness) -> None:
        harness.require_rate_limit_headers()
        harness.can("set_rate_limit")((100, 60))
        harness.can("reset_counters")()
        state = harness.find(SHARED).rate_limit
        assert state is not None
        assert state.amount == 100
        assert state.remaining == 100 - harness.vendor.requests

    def test_over_the_limit_is_rate_limited(self, harness: Harness) -> None:
        harness.can("set_rate_limit")((1, 30))
        with pytest.raises(RateLimited) as info:
            for _ in range(3):
                harness.find(SHARED)
        assert harness.vendor.rate_limited >= 1
        wait = info.value.retry_after_s
        # The vendor's own wait where it gives one (never past the 30 s window), else None.
        assert wait is None or 1 <= wait <= 31

    def test_forced_429_is_rate_limited_with_the_vendors_wait(self, harness: Harness) -> None:
        harness.can("force_rate_limited")(1, 7)
        with pytest.raises(RateLimited) as info:
            harness.find(SHARED)
        assert harness.vendor.rate_limited == 1
        # The vendor's rate-limit answer, forced (with Retry-After: 7 added where the vendor
        # sends none, as Salesforce's 403 REQUEST_LIMIT_EXCEEDED): a wait, if any, is positive.
        wait = info.value.retry_after_s
        assert wait is None or wait > 0

    # ----- debug trace -------------------------------------------------------------------------
    def test_debug_trace_has_one_entry_per_request_and_no_secret(self, harness: Harness) -> None:
        counts = harness.sim is not None and hasattr(harness.sim, "reset_counters")
        if counts:
            harness.sim.reset_counters()
        trace = DebugTrace()
        outcome = harness.find(TWO_FORMATS, "***-***-****", trace=trace)
        requests_made = harness.sim.requests if counts else len(outcome.queries)
        assert len(trace.entries) == requests_made > 0
        assert all(set(e) == {"method", "url", "status", "durationMs"} for e in trace.entries)
        assert SECRET not in json.dumps(trace.entries)

    # ----- through the lookup service, with a real Redis ---------------------------------------
    def test_service_finds_caches_and_keeps_secrets_out(
        self, harness: Harness, redis_db: redis.Redis
    ) -> None:
        service = harness.service(redis_db, formats="(***) ***-****")
        first = service.find_contact(CONNECTION, LookupRequest(FORMATTED_ONLY, debug=True))
        assert first["successful"] is True
        assert [c["name"] for c in first["matchedContactInfo"]] == ["Ada Lovelace"]
        assert first["matchedContactInfo"][0]["createdDate"] == EXPECTED_CREATED["Ada Lovelace"]
        assert first["debugTrace"]
        assert SECRET not in json.dumps(first)
        again = service.find_contact(CONNECTION, LookupRequest(FORMATTED_ONLY, debug=True))
        assert again["extraDataTracking"] == {"isCached": True}
        assert again["debugTrace"] == []  # answered from Redis: no CRM request at all
        assert again["matchedContactInfo"] == first["matchedContactInfo"]

    def test_service_reports_rate_limit_state(
        self, harness: Harness, redis_db: redis.Redis
    ) -> None:
        harness.require_rate_limit_headers()
        harness.can("set_rate_limit")((100, 60))
        result = harness.service(redis_db).find_contact(CONNECTION, LookupRequest(SHARED))
        assert result["successful"] is True
        assert result["extraDataTracking"]["ratelimitAmount"] == 100
        assert 0 <= result["extraDataTracking"]["ratelimitRemaining"] < 100

    def test_service_failure_is_never_an_empty_success(
        self, harness: Harness, redis_db: redis.Redis
    ) -> None:
        harness.can("inject")("503")
        result = harness.service(redis_db).find_contact(CONNECTION, LookupRequest(SHARED))
        assert result["successful"] is False
        assert result["matchedContactInfo"] == []
        assert result["extraDataTracking"]["statusCode"] == 503
        assert result["returnMessage"]["messageType"] == "danger"
        assert redis_db.dbsize() == 0  # a failure caches nothing

    def test_service_no_match_is_a_successful_warning(
        self, harness: Harness, redis_db: redis.Redis
    ) -> None:
        result = harness.service(redis_db, formats=US_FORMATS).find_contact(
            CONNECTION, LookupRequest(NOBODY)
        )
        assert result["successful"] is True
        assert result["matchedContactInfo"] == []
        assert result["returnMessage"]["messageType"] == "warning"
