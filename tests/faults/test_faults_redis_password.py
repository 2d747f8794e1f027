"""A worker started the way docker-compose starts it: every Redis URL without a password and
``REDIS_PASSWORD`` on its own (docker-compose.yml's header), the password holding the
characters a URL cannot carry raw (``/ # @ :``).

The ``celery`` command copies BROKER_URL and RESULT_BACKEND, as given, to CELERY_BROKER_URL
and CELERY_RESULT_BACKEND, which override the app's configuration (celery/bin/celery.py);
before ``tasks.celery_app.strip_celery_cli_urls`` put the settings' URLs there, such a
worker never authenticated ("Cannot connect to redis://...: Authentication required").
On a RabbitMQ run the broker is RabbitMQ and the result backend still this Redis.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from contact_lookup.core.request import LookupRequest
from contact_lookup.settings import Settings
from localredis import EmbeddedRedis
from tasks.celery_app import create_app
from tasks.enqueue import enqueue
from tests.conftest import AMQP_BROKER_URL
from tests.faults.faultkit import WorkerProcess, base_env
from tests.producers.conftest import write_config

pytestmark = pytest.mark.faults

PASSWORD = "c0mp/ose#pw@9:z"
KNOWN = "+14155550100"  # examples/contacts.json: a contact of the demo connection


def test_a_worker_with_redis_password_apart_connects_and_answers(tmp_path: Path) -> None:
    toml = write_config(tmp_path, 'default = "demo"\n')
    with EmbeddedRedis(password=PASSWORD) as server:
        bare = f"redis://127.0.0.1:{server.port}"
        env = base_env(
            REDIS_URL=f"{bare}/0",
            BROKER_URL=AMQP_BROKER_URL or f"{bare}/0",
            RESULT_BACKEND=f"{bare}/1",
            STATE_URL=f"{bare}/2",
            CACHE_URL=f"{bare}/3",
            REDIS_PASSWORD=PASSWORD,
            CONTACT_LOOKUP_CONFIG=str(toml),
        )
        app = create_app(Settings.from_env(env))
        worker = WorkerProcess(env, tmp_path, "compose-style", concurrency=2)
        try:
            worker.start(30)
            result = enqueue(app, "demo", LookupRequest(KNOWN, purpose="call_log")).get(timeout=20)
        finally:
            worker.stop()
            app.close()
    assert result["successful"] and result["matchedContactInfo"], result
    assert "Authentication required" not in worker.logs()
