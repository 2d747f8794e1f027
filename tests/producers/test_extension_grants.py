"""A call log is looked up with the logged party's own CRM grant, as a call pop is.

Issue #10 lets one extension connect its own grant (``auth connect NAME --extension ID``); the
worker picks it from the job's ``rcExtensionId`` (``tasks.find_contact.parse_kwargs`` ->
``LookupRequest.user``). The real IVR capture goes through the pipeline; the call-log job it
queues is parsed as the worker parses it and run against the Clio simulator over HTTP, where
only the user's extension holds a grant: it succeeds with that grant, and the same job
without its extension finds no grant at all.
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path

import redis

from contact_lookup.auth.endpoint import TokenSet
from crmsim.clio import ClioSimulator
from producers.pipeline import build_pipeline
from tasks.find_contact import parse_kwargs
from tests.auth.authkit import NUMBERS, manager, oauth_sim, service, setup
from tests.producers.conftest import SALES_EXT, all_queued, settings_for, write_config
from tests.producers.test_real_streams import IVR_STREAM, USER_EXT, stream


def test_a_call_log_job_uses_the_logged_extensions_own_grant(
    pr_url: str, tmp_path: Path, client: redis.Redis
) -> None:
    path = write_config(tmp_path, f'"{SALES_EXT}" = "sales"\ndefault = "demo"\n')
    producer = build_pipeline(settings_for(pr_url, path))
    producer.recorded = True
    try:
        for event in stream(IVR_STREAM):
            producer.handle(event)
    finally:
        producer.app.close()
    (job,) = all_queued(client)["call_log"]
    assert job["kwargs"]["rcExtensionId"] == USER_EXT
    _, query, _ = parse_kwargs(job["kwargs"])
    query = dataclasses.replace(query, phone_number=NUMBERS[0])  # a number the simulator has

    with oauth_sim(ClioSimulator, lifetime_s=600) as (sim, oauth):
        config = setup(tmp_path, sim, oauth)
        tokens = manager(client, oauth)
        access, refresh = oauth.issue(user="avery")
        grant = TokenSet(access, refresh, time.time() + 600, 600)
        tokens.store.save("crm", grant, user=USER_EXT)  # the extension's own grant only
        svc = service(config, client, tokens)
        mine = svc.lookup("crm", query)
        assert mine["successful"], mine
        assert oauth.token_calls == 0  # the stored grant was used as it is
        anyone = svc.lookup("crm", dataclasses.replace(query, user=None, force_refresh=True))
        assert anyone["extraDataTracking"]["errorType"] == "AuthRevoked"  # no grant to use
