"""Bad input, fuzzed with hypothesis: nothing raises, every refusal says why, and nothing
already accepted is lost.

- phone numbers and format strings through ``LookupService.find_contact`` (json connector);
- date values through ``contact_lookup.model.dates.normalise_date`` / ``display_date``;
- task kwargs through ``tasks.find_contact.parse_kwargs`` and the task's ``.apply``;
- webhook bodies through ``producers.events.plan`` and the webhook app (Flask test client);
- batch files through ``contact-lookup relookup`` with a real in-process worker.

Each test counts the inputs it ran; the totals are a figure of the suite.
"""

from __future__ import annotations

import contextlib
import copy
import json
import re
import shutil
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
import redis
from celery.contrib.testing.worker import start_worker
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import tasks.find_contact  # noqa: F401  (registers the shared task)
from contact_lookup.connectors.registry import ConnectorFactory
from contact_lookup.core.cache import ContactCache
from contact_lookup.core.request import LookupRequest
from contact_lookup.core.service import LookupService
from contact_lookup.model import phone
from contact_lookup.model.config import load_config
from contact_lookup.model.dates import display_date, normalise_date
from contact_lookup.model.errors import InvalidInput, InvalidPhoneNumber
from contact_lookup.model.purpose import PURPOSES
from contact_lookup.settings import Settings
from tasks.celery_app import QUEUES, ContactLookupCelery, create_app
from tasks.find_contact import KWARGS, parse_kwargs
from tests.conftest import AMQP_BROKER_URL, EXAMPLES, ROOT, live
from tests.faults.faultkit import FIGURES, figure

pytestmark = pytest.mark.faults


def fuzz(examples: int) -> settings:
    return settings(
        max_examples=examples,
        deadline=None,
        database=None,
        suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    )


CONNECTION = "demo"
TOKEN = "fuzz-verification-token"
FIXTURES = ROOT / "tests" / "fixtures" / "ringcentral"
ISO_Z = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{3})?Z")
ISO_ISH = r"\d{4}-\d{2}-\d{2}([T ]\d{2}:\d{2}(:\d{2}(\.\d{1,9})?)?)?( ?(Z|[+-]\d{2}:?\d{2}))?"
MESSAGE_TYPES = ("danger", "warning", "info", "success")


def count(name: str, n: int = 1) -> None:
    counts = FIGURES.setdefault("inputs_fuzzed", {})
    counts[name] = counts.get(name, 0) + n


@pytest.fixture(scope="module", autouse=True)
def report_counts() -> Iterator[None]:
    yield
    counts = FIGURES.get("inputs_fuzzed", {})
    figure("inputs_fuzzed", **counts, total=sum(v for k, v in counts.items() if k != "total"))


# ----- strategies ------------------------------------------------------------------------------
KNOWN = ["+14155550123", "(415) 555-0100", "415-555-0123", "+442079460958", "102", "14155550177"]
phones = st.one_of(
    st.text(max_size=80),
    st.text(alphabet="0123456789+-() .#*xX\t", max_size=30),
    st.from_regex(r"\+?1?[ (]?[2-9]\d{2}[) -]?[2-9]\d{2}[ -]?\d{4}", fullmatch=True),
    st.sampled_from(KNOWN),
    st.integers().map(str),
)
formats = st.one_of(
    st.none(),
    st.text(max_size=40),
    st.text(alphabet="*#()-, .+x", max_size=40),
    st.sampled_from(["(***) ***-****", "***-***-****, (***) ***-****", "", ",,,", "*" * 64]),
)
json_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=30),
)
json_values = st.recursive(
    json_scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=10), inner, max_size=4)
    ),
    max_leaves=12,
)


@pytest.fixture
def config_path(tmp_path: Path) -> Path:
    shutil.copy(EXAMPLES / "contacts.json", tmp_path / "contacts.json")
    # No settle countdown: every accepted job is then on its purpose queue at once, where the
    # test counts it (on RabbitMQ a countdown travels through the delayed-delivery queues;
    # tests/integration/test_delayed_delivery_amqp.py covers that path).
    text = (EXAMPLES / "contact-lookup.toml").read_text()
    assert "settle_seconds = 1" in text
    (tmp_path / "cl.toml").write_text(text.replace("settle_seconds = 1", "settle_seconds = 0"))
    return tmp_path / "cl.toml"


@pytest.fixture
def fuzz_settings(faults_url: str, config_path: Path) -> Settings:
    return Settings(
        redis_url=faults_url,
        broker_url=AMQP_BROKER_URL or faults_url,  # RabbitMQ under make test-amqp
        result_backend=faults_url,
        cache_url=faults_url,
        state_url=faults_url,
        config_path=str(config_path),
        rc_verification_token=TOKEN,
    )


def assert_result_shape(result: Any) -> None:
    assert isinstance(result, dict)
    assert isinstance(result["successful"], bool)
    assert isinstance(result["matchedContactInfo"], list)
    assert isinstance(result["extraDataTracking"], dict)
    message = result["returnMessage"]
    assert message is None or message["messageType"] in MESSAGE_TYPES
    json.dumps(result)  # travels through Celery's JSON serialiser
    if not result["successful"]:
        # A failure is never an empty success: it says what happened.
        assert result["matchedContactInfo"] == []
        assert message is not None and message["message"]
        assert message["messageType"] in ("danger", "warning")


# ----- phone numbers and formats through the lookup core --------------------------------------
def test_phone_numbers_and_formats_through_the_lookup_core(
    config_path: Path, faults_redis: redis.Redis
) -> None:
    config = load_config(config_path)
    service = LookupService(config, ContactCache(faults_redis, 60), ConnectorFactory())
    contacts = json.loads((config_path.parent / "contacts.json").read_text())
    stored = {p for c in contacts for p in [c.get("phone"), *(c.get("phones") or [])] if p}

    @fuzz(300)
    @given(raw=phones, fmt=formats, extension=st.booleans(), refresh=st.booleans())
    def check(raw: str, fmt: str | None, extension: bool, refresh: bool) -> None:
        count("phone_and_format")
        query = LookupRequest(
            raw, overriding_format=fmt, is_extension=extension, force_refresh=refresh
        )
        result = service.find_contact(CONNECTION, query)
        assert_result_shape(result)
        try:
            phone.extension(raw) if extension else phone.to_e164(raw, "US")
        except InvalidPhoneNumber:
            valid = False
        else:
            valid = True
        if not valid:
            assert result["successful"] is False
            assert result["returnMessage"]["messageType"] == "warning"
            assert result["extraDataTracking"]["errorType"] == "InvalidPhoneNumber"
            return
        assert result["successful"] is True
        real = [c for c in result["matchedContactInfo"] if not c.get("isNewContact")]
        for match in real:  # exact-match CRM: only stored strings can match
            assert match["phone"] in stored
        if not real:
            assert result["returnMessage"]["messageType"] == "warning"
            assert "not found" in result["returnMessage"]["message"]

    check()


# ----- dates -----------------------------------------------------------------------------------
date_values = st.one_of(
    json_values,
    st.integers(min_value=-(10**20), max_value=10**20),
    st.floats(),
    st.datetimes().map(lambda d: d.isoformat()),
    st.datetimes().map(lambda d: d.strftime("%Y%m%d%H%M%S")),
    st.datetimes().map(lambda d: d.strftime("%a, %d %b %Y %H:%M:%S GMT")),
    st.integers(min_value=0, max_value=10**19).map(lambda n: f"/Date({n})/"),
    st.from_regex(
        r"\d{4}-\d{2}-\d{2}([T ]\d{2}:\d{2}(:\d{2}(\.\d{1,9})?)?)?[ ]?(Z|[+-]\d{2}:?\d{2})?"
    ),
    st.binary(max_size=20),
)


@fuzz(600)
@given(value=date_values)
def test_dates_never_raise_and_come_out_iso_utc(value: Any) -> None:
    count("date")
    out = normalise_date(value)
    shown = display_date(value)
    if out is None:
        assert shown is value  # invalid values pass through unchanged
        return
    assert ISO_Z.fullmatch(out), out
    assert shown == out
    assert normalise_date(out) == out  # idempotent: our own output parses to itself
    datetime.fromisoformat(out.replace("Z", "+00:00"))


# ----- task kwargs -----------------------------------------------------------------------------
kwarg_names = st.sampled_from(sorted(KWARGS | {"", "phone", "__class__", "retries"}))
kwargs_values = st.dictionaries(kwarg_names, json_values, max_size=6)
plausible_kwargs = st.fixed_dictionaries(
    {
        "connection": st.sampled_from([CONNECTION, "nope", ""]) | json_scalars,
        "phoneNumber": phones | json_scalars,
    },
    optional={
        "purpose": st.sampled_from(PURPOSES) | json_scalars,
        "overridingFormat": formats | json_scalars,
        "isExtension": st.booleans() | json_scalars,
        "isForceRefreshAccountData": st.booleans() | json_scalars,
        "debug": st.booleans() | json_scalars,
        "resolve": st.sampled_from(["earliest-created", "first-alphabetical"]) | json_scalars,
        "callPop": st.just({"rcAccountId": "1", "rcExtensionId": "2"}) | json_values,
        "retryState": st.just({"waits": [1.0]}) | json_values,
    },
)
any_kwargs = st.one_of(kwargs_values, plausible_kwargs)


@fuzz(400)
@given(kwargs=any_kwargs)
def test_task_kwargs_parse_or_refuse_with_invalid_input(kwargs: dict[str, Any]) -> None:
    count("task_kwargs_parsed")
    try:
        conn, query, pop = parse_kwargs(kwargs)
    except InvalidInput as exc:
        assert exc.user_message()
        return
    assert isinstance(conn, str) and conn
    assert isinstance(query.phone_number, str) and query.purpose in PURPOSES
    assert pop is None or isinstance(pop, dict)


@pytest.fixture
def app(fuzz_settings: Settings) -> Iterator[ContactLookupCelery]:
    app = create_app(fuzz_settings)
    yield app
    app.close()


def test_task_apply_always_returns_a_result(app: ContactLookupCelery) -> None:
    task = app.tasks["find_contact"]

    @fuzz(200)
    @given(kwargs=any_kwargs)
    def check(kwargs: dict[str, Any]) -> None:
        count("task_kwargs_applied")
        outcome = task.apply(kwargs=copy.deepcopy(kwargs))
        assert outcome.state == "SUCCESS", f"{outcome.state}: {outcome.result!r}"
        assert_result_shape(outcome.result)
        try:
            parse_kwargs(kwargs)
        except InvalidInput:
            assert outcome.result["successful"] is False

    check()


# ----- webhook bodies --------------------------------------------------------------------------
def load_fixtures() -> list[dict[str, Any]]:
    # Re-dated to now: the producers skip telephony events older than EVENT_MAX_AGE as stale.
    return [live(json.loads(p.read_text())) for p in sorted(FIXTURES.glob("*.json"))]


def paths_of(value: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every path into a JSON value (dict keys, list indexes), the root excluded."""
    if isinstance(value, dict):
        items: list[tuple[Any, Any]] = list(value.items())
    elif isinstance(value, list):
        items = list(enumerate(value))
    else:
        return []
    out: list[tuple[Any, ...]] = []
    for key, child in items:
        out.append((*prefix, key))
        out += paths_of(child, (*prefix, key))
    return out


@st.composite
def mutated_notifications(draw: st.DrawFn) -> dict[str, Any]:
    """A recorded RingCentral notification with a few fields replaced by anything."""
    base = copy.deepcopy(draw(st.sampled_from(FIXTURE_BODIES)))
    for _ in range(draw(st.integers(1, 4))):
        paths = paths_of(base)
        if not paths:
            break
        *head, last = draw(st.sampled_from(paths))
        target = base
        for key in head:
            target = target[key]
        target[last] = draw(json_values)
    base["uuid"] = draw(st.uuids()).hex  # a new delivery: dedupe does not hide it
    return base


FIXTURE_BODIES = load_fixtures() if FIXTURES.is_dir() else []
needs_producers = pytest.mark.skipif(not FIXTURE_BODIES, reason="producers not written yet")
notifications = st.one_of(json_values, mutated_notifications() if FIXTURE_BODIES else st.nothing())


@needs_producers
@fuzz(400)
@given(notification=notifications)
def test_event_mapping_never_raises(notification: Any) -> None:
    from producers.events import Job, Skip, plan

    count("webhook_plan")
    config = load_config(EXAMPLES / "contact-lookup.toml")
    result = plan(notification, config)
    for step in result.steps:
        assert isinstance(step.outcome, Job | Skip)
        if isinstance(step.outcome, Skip):
            assert step.outcome.reason
        else:
            assert step.outcome.purpose in PURPOSES


@contextlib.contextmanager
def queued_total(client: redis.Redis) -> Iterator[Callable[[], int]]:
    """A count of the messages waiting on the purpose queues: Redis lists, or on a RabbitMQ run
    the queues' message counts (one connection for the whole test)."""
    if AMQP_BROKER_URL is None:
        yield lambda: sum(client.llen(q) for q in QUEUES)
        return
    from amqp.exceptions import NotFound
    from kombu import Connection

    with Connection(AMQP_BROKER_URL, connect_timeout=5) as conn:
        channels = [conn.channel()]

        def total() -> int:
            count = 0
            for name in QUEUES:
                try:
                    count += int(channels[0].queue_declare(name, passive=True).message_count)
                except NotFound:  # never declared: nothing sent to it; the channel was closed
                    channels[0] = conn.channel()
            return count

        yield total


@needs_producers
def test_webhook_bodies_never_get_a_5xx_and_accepted_jobs_are_queued(
    fuzz_settings: Settings, faults_redis: redis.Redis
) -> None:
    from producers.pipeline import build_pipeline
    from producers.webhook import create_webhook_app

    producer = build_pipeline(fuzz_settings)
    client = create_webhook_app(producer, fuzz_settings).test_client()
    accepted = {"enqueued": 0}
    headers = {"Verification-Token": TOKEN, "Content-Type": "application/json"}
    bodies = st.one_of(
        st.binary(max_size=200),
        json_values.map(lambda v: json.dumps(v).encode()),
        notifications.map(lambda v: json.dumps(v).encode()),
    )

    @fuzz(250)
    @given(body=bodies)
    def check(body: bytes) -> None:
        count("webhook_body")
        response = client.post("/webhook/ringcentral", data=body, headers=headers)
        assert response.status_code in (200, 400, 413), response.status_code
        if response.status_code == 200:
            actions = response.get_json()["actions"]
            accepted["enqueued"] += actions.count("enqueued")
        # Nothing accepted is lost: every "enqueued" is a message on a queue (no worker runs).
        assert queued() == accepted["enqueued"]

    try:
        with queued_total(faults_redis) as queued:
            check()
    finally:
        producer.app.close()
    assert accepted["enqueued"] > 0, "no fuzzed body was ever accepted: the fuzzer is too blunt"


# ----- batch files through `contact-lookup relookup` -------------------------------------------
lines = st.one_of(
    phones,
    st.sampled_from(["", "# a comment", "phoneNumber", "name,phoneNumber", '"x",+14155550123']),
    st.text(alphabet=',"\n\r#', max_size=6),
)


def test_relookup_batch_files_never_crash(
    app: ContactLookupCelery,
    fuzz_settings: Settings,
    config_path: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from producers.cli import main

    monkeypatch.setenv("REDIS_URL", fuzz_settings.redis_url)
    monkeypatch.setenv("CONTACT_LOOKUP_CONFIG", str(config_path))
    for name in ("BROKER_URL", "RESULT_BACKEND", "CACHE_URL", "STATE_URL"):
        monkeypatch.delenv(name, raising=False)
    if AMQP_BROKER_URL:
        monkeypatch.setenv("BROKER_URL", AMQP_BROKER_URL)
    runs = {"n": 0}

    @fuzz(30)
    @given(numbers=st.lists(lines, max_size=8))
    def check(numbers: list[str]) -> None:
        count("relookup_file")
        runs["n"] += 1
        source = tmp_path / f"numbers-{runs['n']}.txt"
        out = tmp_path / f"out-{runs['n']}.jsonl"
        source.write_text("\n".join(numbers) + "\n", encoding="utf-8")
        code = main(["relookup", str(source), "--connection", CONNECTION, "--out", str(out)])
        assert code in (0, 2), code  # 2: a CSV without a phoneNumber column (usage error)
        if code == 2:
            return
        written = [json.loads(x) for x in out.read_text().splitlines()] if out.exists() else []
        looked_up = [r for r in written if "result" in r]
        for record in looked_up:
            assert_result_shape(record["result"])
        numbers_out = [r["phoneNumber"] for r in looked_up]
        assert len(numbers_out) == len(set(numbers_out)), "a number was looked up twice"
        row_lines = [r["line"] for r in written]
        assert len(row_lines) == len(set(row_lines)), "a row was written twice"
        for record in written:  # every other row says why it has no result of its own
            assert "result" in record or "duplicateOf" in record or "skipped" in record
        # Nothing lost: a plain list's every valid number has its line of result.
        if not any("," in n or n.strip().strip('"').lower() == "phonenumber" for n in numbers):
            for raw in numbers:
                for one in raw.splitlines():
                    if not one.strip() or one.lstrip().startswith("#"):
                        continue
                    try:
                        e164 = phone.to_e164(one.strip(), "US")
                    except InvalidPhoneNumber:
                        continue
                    assert e164 in numbers_out, (one, numbers_out)
            rows = source.read_text(encoding="utf-8").splitlines()
            assert sorted(row_lines) == list(range(1, len(rows) + 1))  # one line per row

    with start_worker(
        app,
        pool="threads",
        concurrency=4,
        perform_ping_check=False,
        queues=["relookup"],
        shutdown_timeout=10,
    ):
        check()
