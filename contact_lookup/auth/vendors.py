"""Each CRM's documented OAuth 2.0 facts: where its token endpoint is, how the client
authenticates there, what a token answer carries besides the access token.

Sources (the vendors' developer documentation):

- Clio: docs.developers.clio.com/api-docs/authorization — ``{host}/oauth/authorize`` and
  ``{host}/oauth/token`` on the region's own host (app.clio.com, eu.app.clio.com,
  ca.app.clio.com, au.app.clio.com); client_id and client_secret in the form body; access
  tokens live 30 days (``expires_in`` 2592000); a refresh returns no new refresh token.
- Pipedrive: pipedrive.readme.io/docs/marketplace-oauth-authorization — authorize at
  ``https://oauth.pipedrive.com/oauth/authorize``, tokens at ``.../oauth/token`` with
  ``Authorization: Basic base64(client_id:client_secret)``; every answer carries a
  ``refresh_token`` (which may be new), ``expires_in`` (3599) and ``api_domain``, the
  company's API host that requests must then use.
- HubSpot: developers.hubspot.com/docs/api/oauth/tokens — authorize at
  ``https://app.hubspot.com/oauth/authorize``, tokens at
  ``https://api.hubapi.com/oauth/v1/token``, client credentials in the form body,
  ``expires_in`` 1800; a bad refresh token is 400 ``{"status": "BAD_REFRESH_TOKEN", ...}``.
- Salesforce: help.salesforce.com "OAuth 2.0 Refresh Token Flow" and "OAuth 2.0 JWT Bearer
  Flow" — ``{My Domain}/services/oauth2/token`` (or login.salesforce.com /
  test.salesforce.com), client credentials in the body; the answer has ``instance_url``
  (the API host to use) and ``issued_at`` but no ``expires_in``: the token lives until the
  org's session timeout (default 2 hours), so a 401 ``INVALID_SESSION_ID`` is the usual
  signal and the core refreshes then.
- Bullhorn: github.com/bullhorn/rest-api-docs ``_login.md`` — authorize and token at
  ``https://auth{-DC}.bullhornstaffing.com/oauth/...`` (the data centre's auth host: the
  REST login host ``rest{-DC}`` with ``rest`` replaced by ``auth``), parameters in the query
  string as documented; access tokens live 10 minutes, and each refresh token works once
  (every refresh returns a new one). The access token then opens a REST session at
  ``{rest host}/rest-services/login`` (done by the connector).
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlsplit

from contact_lookup.model.config import Connection
from contact_lookup.model.errors import ConfigError


@dataclass(frozen=True)
class Vendor:
    """``client_auth``: ``body`` (client_id/client_secret form fields), ``basic`` (HTTP Basic)
    or ``query`` (URL parameters, Bullhorn). ``base_url_field``: the token answer's member
    naming the API host, if any. ``default_lifetime_s``: assumed when ``expires_in`` is absent.
    """

    token_path: str
    authorize_path: str
    client_auth: str = "body"
    base_url_field: str | None = None
    default_lifetime_s: float = 3600.0
    fixed_host: str | None = None  # the vendor's one OAuth host, else derived from base_url
    authorize_host: str | None = None


VENDORS: dict[str, Vendor] = {
    "clio": Vendor("/oauth/token", "/oauth/authorize", default_lifetime_s=2592000.0),
    "pipedrive": Vendor(
        "/oauth/token",
        "/oauth/authorize",
        client_auth="basic",
        base_url_field="api_domain",
        fixed_host="https://oauth.pipedrive.com",
    ),
    "hubspot": Vendor(
        "/oauth/v1/token",
        "/oauth/authorize",
        default_lifetime_s=1800.0,
        fixed_host="https://api.hubapi.com",
        authorize_host="https://app.hubspot.com",
    ),
    "salesforce": Vendor(
        "/services/oauth2/token",
        "/services/oauth2/authorize",
        base_url_field="instance_url",
        default_lifetime_s=7200.0,
    ),
    "bullhorn": Vendor(
        "/oauth/token", "/oauth/authorize", client_auth="query", default_lifetime_s=600.0
    ),
}
JWT_BEARER_CRMS = ("salesforce",)
# Any other connector (``crm = "rest"``, a plugin) may use auth = "oauth2" with an explicit
# ``token_url``: RFC 6749 as written (client credentials in the form body, section 2.3.1;
# the authorize page beside the token endpoint at the conventional /oauth/authorize).
GENERIC = Vendor("/oauth/token", "/oauth/authorize")


def vendor(connection: Connection) -> Vendor:
    """The OAuth facts of the connection's CRM; ConfigError when it has no OAuth support."""
    found = VENDORS.get(connection.crm)
    if found is None and connection.auth == "oauth2" and connection.token_url:
        return GENERIC
    if found is None or (connection.auth == "jwt-bearer" and connection.crm not in JWT_BEARER_CRMS):
        supported = JWT_BEARER_CRMS if connection.auth == "jwt-bearer" else tuple(VENDORS)
        other = "" if connection.auth == "jwt-bearer" else " (any other crm: set token_url)"
        raise ConfigError(
            f"connection {connection.name!r}: auth = {connection.auth!r} is supported for "
            f"{', '.join(supported)}{other}, not crm {connection.crm!r}"
        )
    return found


def _origin(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


def oauth_host(connection: Connection) -> str:
    """Where the CRM's authorisation server is, for this connection."""
    v = vendor(connection)
    if v.fixed_host:
        return v.fixed_host
    if not connection.base_url:
        raise ConfigError(f"connection {connection.name!r}: base_url is required")
    origin = _origin(connection.base_url)
    if connection.crm == "bullhorn":
        parts = urlsplit(origin)
        host = parts.hostname or ""
        if host.startswith("rest"):  # rest.bullhornstaffing.com, rest-west..., rest22...
            origin = f"{parts.scheme}://auth{host[len('rest') :]}"
    return origin


def token_url(connection: Connection) -> str:
    """``token_url`` from the file, else the vendor's documented token endpoint."""
    if connection.token_url:
        return connection.token_url
    return oauth_host(connection) + vendor(connection).token_path


def authorize_url(connection: Connection) -> str:
    """The vendor's authorize page: ``authorize_url`` from the file, else beside a configured
    ``token_url``, else the documented one."""
    if connection.authorize_url:
        return connection.authorize_url
    v = vendor(connection)
    if connection.token_url:
        return _origin(connection.token_url) + v.authorize_path
    return (v.authorize_host or oauth_host(connection)) + v.authorize_path


def check(connection: Connection) -> None:
    """ConfigError when the connection's auth kind does not fit its CRM."""
    if connection.uses_token_store:
        vendor(connection)
        token_url(connection)
