"""Pure rules of the token store: connection keys validated at load, each vendor's token
endpoint, Fernet key rotation, the refresh margin, and token-endpoint answers mapped to the
error tree (the vendors' documented shapes, contact_lookup/auth/vendors.py)."""

from __future__ import annotations

from pathlib import Path

import pytest
import requests
from cryptography.fernet import Fernet

from contact_lookup.auth import vendors
from contact_lookup.auth.crypto import TokenCipher
from contact_lookup.auth.endpoint import ClientCredentials, InvalidGrant, TokenEndpoint
from contact_lookup.auth.store import TokenRecord
from contact_lookup.model.config import parse_config
from contact_lookup.model.errors import AuthRejected, ConfigError, CRMUnavailable, RateLimited


def conn(**table: object):  # type: ignore[no-untyped-def]
    return parse_config({"connections": {"c": table}}, Path("/etc")).connection("c")


OAUTH = {"auth": "oauth2", "client_id_env": "ID", "client_secret_env": "SECRET"}


@pytest.mark.parametrize(
    ("table", "message"),
    [
        ({"crm": "clio", "auth": "magic"}, "auth must be one of token, oauth2, jwt-bearer"),
        ({"crm": "clio", "auth": "oauth2", "client_secret_env": "S"}, "needs client_id_env"),
        ({"crm": "clio", "auth": "oauth2", "client_id_env": "I"}, "needs client_secret_env"),
        ({"crm": "clio", **OAUTH, "token_env": "T"}, "token_env is for auth = \"token\""),
        ({"crm": "clio", "client_id_env": "I"}, "need auth = \"oauth2\" or \"jwt-bearer\""),
        ({"crm": "clio", **OAUTH, "token_url": "ftp://x"}, "token_url must be an http(s) URL"),
        ({"crm": "clio", **OAUTH, "authorize_url": "x/y"}, "authorize_url must be an http(s) URL"),
        ({"crm": "clio", "authorize_url": "https://x/a"}, "need auth = \"oauth2\""),
        ({"crm": "clio", **OAUTH, "scopes": 3}, "scopes must be a string or a list"),
        ({"crm": "salesforce", "auth": "jwt-bearer", "client_id_env": "I", "username": "u"},
         "one of private_key_file or private_key_env"),
        ({"crm": "salesforce", "auth": "jwt-bearer", "client_id_env": "I",
          "private_key_env": "K"}, "needs username"),
    ],
)  # fmt: skip
def test_bad_auth_keys_are_refused_at_load(table: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError, match="connection 'c'") as err:
        conn(**table)
    assert message in str(err.value)


def test_oauth_only_where_the_vendor_has_it() -> None:
    with pytest.raises(ConfigError, match="any other crm: set token_url"):
        vendors.check(conn(crm="insightly", base_url="https://api.na1.insightly.com", **OAUTH))
    with pytest.raises(ConfigError, match="supported for salesforce"):
        vendors.check(
            conn(crm="clio", auth="jwt-bearer", client_id_env="I", private_key_env="K",
                 username="u")
        )  # fmt: skip


@pytest.mark.parametrize(
    ("crm", "base_url", "token_url", "authorize_url"),
    [
        ("clio", "https://eu.app.clio.com", "https://eu.app.clio.com/oauth/token",
         "https://eu.app.clio.com/oauth/authorize"),
        ("pipedrive", "https://acme.pipedrive.com", "https://oauth.pipedrive.com/oauth/token",
         "https://oauth.pipedrive.com/oauth/authorize"),
        ("hubspot", "https://api.hubapi.com", "https://api.hubapi.com/oauth/v1/token",
         "https://app.hubspot.com/oauth/authorize"),
        ("salesforce", "https://acme.my.salesforce.com",
         "https://acme.my.salesforce.com/services/oauth2/token",
         "https://acme.my.salesforce.com/services/oauth2/authorize"),
        ("bullhorn", "https://rest-west.bullhornstaffing.com",
         "https://auth-west.bullhornstaffing.com/oauth/token",
         "https://auth-west.bullhornstaffing.com/oauth/authorize"),
    ],
)  # fmt: skip
def test_documented_token_endpoints(
    crm: str, base_url: str, token_url: str, authorize_url: str
) -> None:
    c = conn(crm=crm, base_url=base_url, **OAUTH)
    assert vendors.token_url(c) == token_url
    assert vendors.authorize_url(c) == authorize_url


def test_any_other_crm_takes_oauth2_with_an_explicit_token_url() -> None:
    rest = conn(crm="rest", base_url="https://api.capsulecrm.com",
                token_url="https://api.capsulecrm.com/oauth/token", **OAUTH)  # fmt: skip
    vendors.check(rest)
    assert vendors.vendor(rest).client_auth == "body"
    assert vendors.authorize_url(rest) == "https://api.capsulecrm.com/oauth/authorize"


def test_a_configured_token_url_wins() -> None:
    c = conn(crm="hubspot", base_url="https://api.hubapi.com", token_url="http://h/t", **OAUTH)
    assert vendors.token_url(c) == "http://h/t"


def test_multifernet_rotation_old_key_reads_new_key_writes() -> None:
    old, new = Fernet.generate_key().decode(), Fernet.generate_key().decode()
    blob = TokenCipher(old).encrypt({"refresh_token": "rt-1"})
    rotated = TokenCipher(f"{new},{old}")
    assert rotated.decrypt(blob) == {"refresh_token": "rt-1"}
    again = rotated.rotate(blob)
    assert TokenCipher(new).decrypt(again) == {"refresh_token": "rt-1"}
    with pytest.raises(ConfigError, match="cannot be decrypted"):
        TokenCipher(new).decrypt(blob)  # the old key was dropped before rotating
    assert b"rt-1" not in blob and b"rt-1" not in again
    with pytest.raises(ConfigError, match="TOKEN_ENCRYPTION_KEY"):
        TokenCipher("")
    with pytest.raises(ConfigError, match="Fernet keys"):
        TokenCipher("not-a-key")


@pytest.mark.parametrize(
    ("lifetime", "expires_in", "due"),
    [
        (3600, 200, False),  # more than the 120 s margin left
        (3600, 100, True),
        (3, 2.0, False),  # a 3 s token: margin is half its life, 1.5 s
        (3, 1.0, True),
    ],
)
def test_refresh_margin_is_never_more_than_half_the_lifetime(
    lifetime: float, expires_in: float, due: bool
) -> None:
    record = TokenRecord("at", "rt", expires_at=1000 + expires_in, lifetime_s=lifetime)
    assert record.refresh_due(1000, 120) is due


def answer(status: int, body: bytes, headers: dict[str, str] | None = None) -> requests.Response:
    resp = requests.Response()
    resp.status_code, resp._content = status, body
    resp.headers.update(headers or {})
    return resp


def endpoint(crm: str = "clio") -> TokenEndpoint:
    c = conn(crm=crm, base_url="https://app.clio.com", **OAUTH)
    return TokenEndpoint(c, ClientCredentials("id", client_secret="s3cret-value"))


@pytest.mark.parametrize(
    ("resp", "error"),
    [
        (answer(400, b'{"error": "invalid_grant"}'), InvalidGrant),
        (answer(400, b'{"status": "BAD_REFRESH_TOKEN", "message": "missing"}'), InvalidGrant),
        (answer(401, b'{"error": "invalid_client"}'), AuthRejected),
        (answer(429, b"{}", {"Retry-After": "7"}), RateLimited),
        (answer(503, b"<html>"), CRMUnavailable),
        (answer(200, b"<html>"), CRMUnavailable),
        (answer(200, b'{"token_type": "bearer"}'), CRMUnavailable),
    ],
)
def test_token_endpoint_answers_map_to_the_error_tree(
    resp: requests.Response, error: type[Exception]
) -> None:
    with pytest.raises(error) as raised:
        endpoint()._parse(resp, 0.0)
    assert "s3cret-value" not in str(raised.value)
    if error is RateLimited:
        assert raised.value.retry_after_s == 7  # type: ignore[attr-defined]


def test_answer_shapes_lifetime_refresh_token_and_api_host() -> None:
    sf = conn(crm="salesforce", base_url="https://acme.my.salesforce.com", **OAUTH)
    ep = TokenEndpoint(sf, ClientCredentials("id", client_secret="s"))
    tokens = ep._parse(
        answer(200, b'{"access_token": "at-1", "instance_url": "https://na9.salesforce.com"}'),
        100.0,
    )
    assert tokens.base_url == "https://na9.salesforce.com"
    assert tokens.refresh_token is None  # keep the stored one
    assert tokens.expires_at == 100.0 + 7200  # no expires_in: the default session timeout
    clio = endpoint()._parse(answer(200, b'{"access_token": "a", "expires_in": 2592000}'), 0.0)
    assert clio.lifetime_s == 2592000


def test_rotated_out_tokens_leave_the_redactor_but_shapes_still_catch_them() -> None:
    from contact_lookup.model.redaction import Redactor

    r = Redactor(["at-old-token-1", "at-new-token-2"])
    r.discard("at-old-token-1")
    assert r("x at-old-token-1 at-new-token-2") == "x at-old-token-1 ***"
    assert r("Authorization: Bearer at-old-token-1") == "Authorization: ***"
    r.discard("at-new-token-2")
    assert r("at-new-token-2") == "at-new-token-2" and r.secrets == []
