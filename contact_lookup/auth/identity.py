"""Who is connected: the CRM user a grant belongs to, read from the vendor's documented
identity endpoint right after ``auth connect`` / ``auth seed`` stored the tokens.

Only names, e-mail addresses and ids are kept from the answers; no token is ever returned,
printed or put in an exception (HubSpot's answer echoes the token: it is dropped here).

Sources (the vendors' developer documentation, checked with the ``search`` tool):

- Clio: ``GET /api/v4/users/who_am_i`` (docs.developers.clio.com/api-reference, Users: the
  user the access token belongs to) on the region's host; Clio answers only ``id`` and
  ``etag`` unless ``fields`` names more, so ``fields=id,name,email`` is asked for. Answer
  ``{"data": {"id", "name", "email"}}`` (the shape public Clio integrations read after
  their token exchange).
- Pipedrive: ``GET {api_domain}/api/v1/users/me`` (pipedrive.readme.io/docs/
  marketplace-getting-user-data: "After you've obtained a valid access token, you can get
  user's info by requesting the /users/me API endpoint"); answer ``{"success": true, "data":
  {"id", "name", "email", "company_id", "company_name", "company_domain", ...}}``.
- HubSpot: ``GET https://api.hubapi.com/oauth/v1/access-tokens/{token}``
  (developers.hubspot.com/docs/api-reference/legacy/authentication/oauth-tokens/v1/
  get-oauth-token-metadata): ``{"user", "user_id", "hub_id", "hub_domain", "app_id",
  "scopes", "token", ...}``.
- Salesforce: the OpenID Connect UserInfo endpoint ``GET {instance_url}/services/oauth2/
  userinfo`` with the access token (help.salesforce.com "UserInfo Endpoint"; the identity
  service behind the token answer's ``id`` URL, help.salesforce.com "Identity URLs", answers
  the same user): ``{"user_id", "organization_id", "preferred_username", "name", "email"}``.
- Bullhorn: a REST session (``/rest-services/login``, bullhorn.github.io/rest-api-docs
  "Login": ``{BhRestToken, restUrl}``), then the settings operation
  ``GET {restUrl}settings/userId,corporationName`` (rest-api-docs "Settings"; one member per
  named setting: ``{"userId": 1234, "corporationName": "..."}``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any
from urllib.parse import quote, urlsplit

import requests

from contact_lookup.auth import vendors
from contact_lookup.auth.store import TokenRecord
from contact_lookup.model.config import Connection


class IdentityUnavailable(Exception):
    """The identity endpoint could not be read; the message names no token."""


def _origin(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


def _get(session: requests.Session, url: str, timeout_s: float, **kwargs: Any) -> Any:
    try:
        resp = session.get(url, timeout=timeout_s, **kwargs)
    except requests.RequestException as exc:
        raise IdentityUnavailable(f"unreachable ({type(exc).__name__})") from None
    if resp.status_code != 200:
        raise IdentityUnavailable(f"HTTP {resp.status_code}")
    try:
        return resp.json()
    except ValueError:
        raise IdentityUnavailable("not JSON") from None


def _pick(body: Any, *names: str) -> dict[str, Any]:
    if not isinstance(body, Mapping):
        raise IdentityUnavailable("unexpected answer")
    out = {n: body[n] for n in names if isinstance(body.get(n), str | int) and body.get(n) != ""}
    if not out:
        raise IdentityUnavailable("the answer names no user")
    return out


def who(connection: Connection, record: TokenRecord, *, timeout_s: float = 10.0) -> dict[str, Any]:
    """The connected user (``crm`` plus the vendor's own fields); IdentityUnavailable if the
    vendor's identity endpoint cannot be read."""
    session = requests.Session()
    session.trust_env = False
    if connection.proxy:
        session.proxies = {"http": connection.proxy, "https": connection.proxy}
    bearer = {"Authorization": f"Bearer {record.access_token}", "Accept": "application/json"}
    base = record.base_url or connection.base_url or ""
    crm = connection.crm
    try:
        if crm == "clio":
            body = _get(session, _origin(base) + "/api/v4/users/who_am_i", timeout_s,
                        headers=bearer, params={"fields": "id,name,email"})  # fmt: skip
            found = _pick(body.get("data") if isinstance(body, Mapping) else None,
                          "name", "email", "id")  # fmt: skip
        elif crm == "pipedrive":
            body = _get(session, _origin(base) + "/api/v1/users/me", timeout_s, headers=bearer)
            found = _pick(body.get("data") if isinstance(body, Mapping) else None,
                          "name", "email", "id", "company_name")  # fmt: skip
        elif crm == "hubspot":
            host = _origin(vendors.token_url(connection))
            url = f"{host}/oauth/v1/access-tokens/{quote(record.access_token, safe='')}"
            body = _get(session, url, timeout_s, headers={"Accept": "application/json"})
            found = _pick(body, "user", "user_id", "hub_id", "hub_domain")
        elif crm == "salesforce":
            url = _origin(base) + "/services/oauth2/userinfo"
            body = _get(session, url, timeout_s, headers=bearer)
            found = _pick(body, "preferred_username", "name", "email", "user_id",
                          "organization_id")  # fmt: skip
        elif crm == "bullhorn":
            login = _get(session, _origin(base) + "/rest-services/login", timeout_s,
                         params={"version": "*", "access_token": record.access_token})  # fmt: skip
            if not isinstance(login, Mapping) or not isinstance(login.get("restUrl"), str):
                raise IdentityUnavailable("the login answer had no restUrl")
            body = _get(session, login["restUrl"] + "settings/userId,corporationName", timeout_s,
                        headers={"BhRestToken": str(login.get("BhRestToken") or "")})  # fmt: skip
            found = _pick(body, "userId", "corporationName")
        else:
            raise IdentityUnavailable(f"no identity endpoint known for crm {crm!r}")
    finally:
        session.close()
    return {"crm": crm, **found}


def describe(identity: Mapping[str, Any]) -> str:
    """One line for the operator: the user's name and login, e-mail or id."""
    name = identity.get("name") or identity.get("corporationName") or ""
    login = (
        identity.get("preferred_username")
        or identity.get("email")
        or identity.get("user")
        or (f"user {identity['userId']}" if "userId" in identity else "")
        or (f"user {identity['id']}" if "id" in identity else "")
    )
    extra = f" (hub {identity['hub_id']})" if "hub_id" in identity else ""
    return " ".join(p for p in (str(name), f"<{login}>" if login else "") if p) + extra
