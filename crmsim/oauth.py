"""OAuth 2.0 for the simulators: each vendor's token endpoint and authorize page.

``enable(sim, lifetime_s=3, rotate=True)`` turns a vendor simulator into an OAuth one:

- **Token endpoint** at the vendor's path (``TOKEN_PATHS``), with the vendor's client
  authentication (Pipedrive: HTTP Basic; Bullhorn: query string as in its docs; the others:
  form body), grants ``authorization_code``, ``refresh_token`` and, for Salesforce,
  ``urn:ietf:params:oauth:grant-type:jwt-bearer`` (RFC 7523; the assertion is checked against
  ``jwt_public_key`` when set). Answers in each vendor's documented shape (see
  ``contact_lookup/auth/vendors.py`` for the sources): Salesforce gives ``instance_url`` and
  no ``expires_in``; Pipedrive gives ``api_domain``; Clio returns no refresh token on a
  refresh. Errors: ``{"error": "invalid_grant"}`` 400 (HubSpot: ``BAD_REFRESH_TOKEN``),
  ``{"error": "invalid_client"}`` 401.
- **Authorize page** (``GET`` the vendor's authorize path): the simulated user approves at
  once, a 302 to ``redirect_uri?code=...&state=...``.
- **Access tokens** expire after ``lifetime_s`` seconds; a request with an issued, unexpired
  token is let through to the vendor's own route, any other token meets the vendor's own 401.
- **Rotation**: ``rotate=True`` issues a new refresh token on every refresh and the used one
  stops working (Bullhorn always rotates). ``revoke()`` invalidates every grant.
- **Who is connected**: each vendor's identity endpoint (``IDENTITY_PATHS``; HubSpot's
  ``/oauth/v1/access-tokens/{token}``; Bullhorn's ``{restUrl}settings/...`` is in
  ``crmsim/bullhorn.py``) answers for the user who granted the access token, in the vendor's
  shape; ``identity_failures`` makes the next ones answer 500.
- Knobs and counters: ``token_calls`` (every token-endpoint request), ``refreshes`` (and
  ``refresh_times``),
  ``fail_next(status, count)`` (answer 503/429 instead), ``hang_s`` (hold each token request).

The hook into ``crmsim.base.Simulator`` is two lines in its dispatch; vendor modules keep
their own auth checks and 401 bodies (Bullhorn's ``settings/`` route, behind its REST session,
is the one identity endpoint in a vendor module).
"""

from __future__ import annotations

import base64
import secrets
import threading
import time
from collections import deque
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, urlencode

from crmsim.base import SimRequest, SimResponse

if TYPE_CHECKING:
    from crmsim.base import Simulator

TOKEN_PATHS = {
    "clio": "/oauth/token",
    "pipedrive": "/oauth/token",
    "hubspot": "/oauth/v1/token",
    "salesforce": "/services/oauth2/token",
    "bullhorn": "/oauth/token",
    # Capsule (reached through crm = "rest"): developer.capsulecrm.com/v2/overview/authentication,
    # "OAuth 2": api.capsulecrm.com/oauth/token and /oauth/authorise; an invalid or expired
    # bearer token is 401.
    "capsule": "/oauth/token",
}
AUTHORIZE_PATHS = {
    "clio": "/oauth/authorize",
    "pipedrive": "/oauth/authorize",
    "hubspot": "/oauth/authorize",
    "salesforce": "/services/oauth2/authorize",
    "bullhorn": "/oauth/authorize",
    "capsule": "/oauth/authorise",
}
JWT_BEARER = "urn:ietf:params:oauth:grant-type:jwt-bearer"
# Who is connected (contact_lookup/auth/identity.py has the vendors' documentation).
IDENTITY_PATHS = {
    "clio": ("/api/v4/users/who_am_i", "/api/v4/users/who_am_i.json"),
    "pipedrive": ("/api/v1/users/me", "/v1/users/me"),
    "salesforce": ("/services/oauth2/userinfo",),
}
HUBSPOT_TOKEN_INFO = "/oauth/v1/access-tokens/"
ORG_ID, USER_ID = "00D000000000001", "005000000000001"


@dataclass
class Grant:
    refresh_token: str | None
    user: str


class OAuthServer:
    """The authorisation server of one simulator (thread-safe)."""

    def __init__(
        self,
        sim: Simulator,
        *,
        lifetime_s: float = 3600.0,
        rotate: bool = False,
        client_id: str = "sim-client-id",
        client_secret: str | None = None,
        hang_s: float = 0.0,
    ) -> None:
        self.sim = sim
        self.vendor = sim.name
        self.lifetime_s = lifetime_s
        self.rotate = rotate or self.vendor == "bullhorn"  # Bullhorn: single-use refresh tokens
        self.client_id = client_id
        self.client_secret = client_secret or "sim-secret-" + secrets.token_urlsafe(12)
        self.hang_s = hang_s
        self.jwt_public_key: str | None = None
        self.lock = threading.Lock()
        self.access: dict[str, float] = {}  # access token -> expiry (epoch s)
        self.access_user: dict[str, str] = {}  # access token -> the user who granted it
        self.identity_calls = 0
        self.identity_failures = 0  # answer the next N identity requests with a 500
        self.refresh: dict[str, Grant] = {}  # live refresh tokens
        self.codes: dict[str, tuple[str, str]] = {}  # code -> (redirect_uri, user)
        self.token_calls = 0
        self.refreshes = 0
        self.refresh_times: list[float] = []  # time.monotonic() of each successful refresh
        self.issued_refresh: list[str] = []  # every refresh token issued, in order
        self.failures: deque[int] = deque()

    # ----- test knobs --------------------------------------------------------------------------
    def issue(self, user: str = "sim-user") -> tuple[str, str]:
        """A fresh grant as if a user had connected: (access token, refresh token)."""
        with self.lock:
            access, refresh = self._new_access(user), self._new_refresh(user)
        return access, refresh

    def revoke(self) -> None:
        """The user revoked the app: every refresh and access token stops working."""
        with self.lock:
            self.refresh.clear()
            self.access.clear()

    def expire_access_tokens(self) -> None:
        with self.lock:
            self.access = {t: 0.0 for t in self.access}

    def fail_next(self, status: int, count: int = 1) -> None:
        with self.lock:
            self.failures.extend([status] * count)

    @property
    def newest_refresh_token(self) -> str | None:
        return self.issued_refresh[-1] if self.issued_refresh else None

    # ----- the hook ----------------------------------------------------------------------------
    def handle(self, req: SimRequest) -> SimResponse | None:
        """The answer for the token endpoint or authorize page; None for API requests, whose
        presented access token is swapped for the vendor route's credential when valid."""
        if req.path == TOKEN_PATHS[self.vendor] and req.method == "POST":
            return self._token(req)
        if req.path == AUTHORIZE_PATHS[self.vendor] and req.method == "GET":
            return self._authorize(req)
        if req.method == "GET" and self._is_identity(req.path):
            answer = self._identity(req)
            if answer is not None:
                return answer
        self._admit(req)
        return None

    # ----- who is connected ----------------------------------------------------------------------
    def _is_identity(self, path: str) -> bool:
        if self.vendor == "hubspot":
            return path.startswith(HUBSPOT_TOKEN_INFO)
        if self.vendor == "bullhorn":
            return "/settings/" in path
        return path in IDENTITY_PATHS.get(self.vendor, ())

    def _identity(self, req: SimRequest) -> SimResponse | None:
        """The vendor's identity answer for a live access token; None lets the vendor's own
        route answer (its 401 for a bad token; Bullhorn's settings need its REST session)."""
        with self.lock:
            self.identity_calls += 1
            if self.identity_failures:
                self.identity_failures -= 1
                return SimResponse(500, b"<html>identity service down</html>",
                                   {"Content-Type": "text/html"})  # fmt: skip
        if self.vendor == "bullhorn":
            return None
        now = time.time()
        if self.vendor == "hubspot":
            token = req.path[len(HUBSPOT_TOKEN_INFO) :]
        else:
            auth = req.headers.get("Authorization") or req.headers.get("authorization") or ""
            token = auth[7:] if auth.startswith("Bearer ") else ""
        with self.lock:
            live = self.access.get(token, 0.0) > now
            user = self.access_user.get(token, "sim-user")
            expires_in = int(self.access.get(token, now) - now)
        if not live:
            if self.vendor == "hubspot":
                return SimResponse(404, {"status": "error", "message": "Token not found",
                                         "correlationId": secrets.token_hex(8)})  # fmt: skip
            return None
        name, email = user.replace("-", " ").title(), f"{user}@example.com"
        if self.vendor == "clio":
            return SimResponse(200, {"data": {"id": 344001, "etag": '"1"', "name": name,
                                              "email": email}})  # fmt: skip
        if self.vendor == "pipedrive":
            data = {"id": 777, "name": name, "email": email, "company_id": 5001,
                    "company_name": "Sim Company", "company_domain": "simco"}  # fmt: skip
            return SimResponse(200, {"success": True, "data": data})
        if self.vendor == "hubspot":
            return SimResponse(200, {
                "token": token, "user": email, "hub_domain": "sim.hubspot.com", "hub_id": 62515,
                "app_id": 456, "expires_in": expires_in, "user_id": 123,
                "token_type": "access", "scopes": ["oauth", "crm.objects.contacts.read"],
            })  # fmt: skip
        return SimResponse(200, {  # salesforce UserInfo
            "sub": f"{self.sim.url}/id/{ORG_ID}/{USER_ID}", "user_id": USER_ID,
            "organization_id": ORG_ID, "preferred_username": email, "nickname": user,
            "name": name, "email": email, "user_type": "STANDARD",
        })  # fmt: skip

    def _admit(self, req: SimRequest) -> None:
        now = time.time()
        with self.lock:
            valid = {t for t, exp in self.access.items() if exp > now}
        auth = req.headers.get("Authorization") or req.headers.get("authorization") or ""
        if auth.startswith("Bearer ") and auth[7:] in valid:
            req.headers = {**req.headers, "Authorization": f"Bearer {self.sim.token}"}
            req.headers.pop("authorization", None)
        for name in ("x-api-token", "X-Api-Token"):
            if req.headers.get(name) in valid:
                req.headers = {**req.headers, name: self.sim.token}
        if req.arg("access_token") in valid:  # Bullhorn's /rest-services/login
            req.query = {**req.query, "access_token": [self.sim.token]}

    # ----- the token endpoint ------------------------------------------------------------------
    def _token(self, req: SimRequest) -> SimResponse:
        with self.lock:
            self.token_calls += 1
            failure = self.failures.popleft() if self.failures else None
        if self.hang_s:
            time.sleep(self.hang_s)
        if failure == 429:
            return SimResponse(429, {"error": "rate_limited"}, {"Retry-After": "1"})
        if failure:
            return SimResponse(failure, b"<html>unavailable</html>", {"Content-Type": "text/html"})
        form = {k: v[0] for k, v in parse_qs(req.body.decode("utf-8", "replace")).items()}
        params = {**{k: v[0] for k, v in req.query.items()}, **form}
        grant_type = params.get("grant_type")
        if grant_type == JWT_BEARER and self.vendor == "salesforce":
            return self._jwt(params)
        if not self._client_ok(req, params):
            return SimResponse(
                401,
                {"error": "invalid_client", "error_description": "client authentication failed"},
            )
        if grant_type == "refresh_token":
            return self._refresh_grant(params.get("refresh_token") or "")
        if grant_type == "authorization_code":
            with self.lock:
                found = self.codes.pop(params.get("code") or "", None)
            if found is None or found[0] != params.get("redirect_uri"):
                return self._invalid_grant("invalid authorization code")
            with self.lock:
                access = self._new_access(found[1])
                body = self._answer(access, self._new_refresh(found[1]), first=True)
            return SimResponse(200, body)
        return SimResponse(400, {"error": "unsupported_grant_type"})

    def _client_ok(self, req: SimRequest, params: dict[str, str]) -> bool:
        if self.vendor == "pipedrive":
            auth = req.headers.get("Authorization") or req.headers.get("authorization") or ""
            expected = base64.b64encode(f"{self.client_id}:{self.client_secret}".encode()).decode()
            return auth == f"Basic {expected}"
        return (
            params.get("client_id") == self.client_id
            and params.get("client_secret") == self.client_secret
        )

    def _refresh_grant(self, token: str) -> SimResponse:
        with self.lock:
            grant = self.refresh.get(token)
            if grant is None:
                return self._invalid_grant("refresh token revoked, expired or already used")
            self.refreshes += 1
            self.refresh_times.append(time.monotonic())
            new_refresh = None
            if self.rotate:
                del self.refresh[token]
                new_refresh = self._new_refresh(grant.user)
            body = self._answer(self._new_access(grant.user), new_refresh or token, first=False)
        return SimResponse(200, body)

    def _jwt(self, params: dict[str, str]) -> SimResponse:
        import jwt

        try:
            claims = jwt.decode(
                params.get("assertion") or "",
                self.jwt_public_key or "",
                algorithms=["RS256"],
                audience=["https://login.salesforce.com", "https://test.salesforce.com"],
                options={"verify_signature": self.jwt_public_key is not None},
            )
        except jwt.PyJWTError:
            return self._invalid_grant("invalid assertion")
        if claims.get("iss") != self.client_id:
            return self._invalid_grant("invalid client_id")
        with self.lock:
            body = self._answer(self._new_access(str(claims.get("sub") or "")), None, first=False)
        return SimResponse(200, body)

    def _invalid_grant(self, description: str) -> SimResponse:
        if self.vendor == "hubspot":
            return SimResponse(
                400,
                {
                    "status": "BAD_REFRESH_TOKEN",
                    "message": "missing or unknown refresh token",
                    "correlationId": secrets.token_hex(8),
                },
            )
        return SimResponse(400, {"error": "invalid_grant", "error_description": description})

    def _answer(self, access: str, refresh: str | None, *, first: bool) -> dict[str, Any]:
        """The vendor's token answer (called under the lock)."""
        lifetime = int(self.lifetime_s) if self.lifetime_s >= 1 else self.lifetime_s
        if self.vendor == "salesforce":
            body: dict[str, Any] = {
                "access_token": access,
                "instance_url": self.sim.url,
                "id": f"{self.sim.url}/id/{ORG_ID}/{USER_ID}",
                "token_type": "Bearer",
                "issued_at": str(int(time.time() * 1000)),
                "signature": secrets.token_urlsafe(16),
                "scope": "api refresh_token",
            }
            if refresh and (first or self.rotate):
                body["refresh_token"] = refresh
            return body
        body = {"access_token": access, "token_type": "bearer", "expires_in": lifetime}
        if self.vendor == "clio":
            if first or self.rotate:  # Clio sends none on a refresh unless it rotated it
                body["refresh_token"] = refresh
        elif refresh:
            body["refresh_token"] = refresh
        if self.vendor == "pipedrive":
            body.update(scope="base,contacts:read", api_domain=self.sim.url)
        return body

    def _new_access(self, user: str = "sim-user") -> str:
        token = "at-" + secrets.token_urlsafe(18)
        self.access[token] = time.time() + self.lifetime_s
        self.access_user[token] = user
        return token

    def _new_refresh(self, user: str) -> str:
        token = "rt-" + secrets.token_urlsafe(18)
        self.refresh[token] = Grant(token, user)
        self.issued_refresh.append(token)
        return token

    # ----- the authorize page ------------------------------------------------------------------
    def _authorize(self, req: SimRequest) -> SimResponse:
        redirect, state = req.arg("redirect_uri") or "", req.arg("state") or ""
        if req.arg("client_id") != self.client_id or not redirect:
            return SimResponse(400, {"error": "invalid_request"})
        code = "code-" + secrets.token_urlsafe(12)
        with self.lock:
            self.codes[code] = (redirect, req.arg("user") or "sim-user")
        sep = "&" if "?" in redirect else "?"
        location = f"{redirect}{sep}{urlencode({'code': code, 'state': state})}"
        return SimResponse(302, b"", {"Location": location})

    # ----- what a harness needs ----------------------------------------------------------------
    def connection(self) -> dict[str, Any]:
        """The connections-file table for an oauth2 connection to this simulator."""
        return {
            "crm": self.sim.crm or self.sim.name,
            "base_url": self.sim.url,
            "auth": "oauth2",
            "client_id_env": self.client_id_env,
            "client_secret_env": self.client_secret_env,
            "token_url": self.sim.url + TOKEN_PATHS[self.vendor],
        }

    @property
    def client_id_env(self) -> str:
        return f"CRMSIM_{self.vendor.upper()}_CLIENT_ID"

    @property
    def client_secret_env(self) -> str:
        return f"CRMSIM_{self.vendor.upper()}_CLIENT_SECRET"

    def env(self) -> dict[str, str]:
        return {self.client_id_env: self.client_id, self.client_secret_env: self.client_secret}


def enable(sim: Simulator, **options: Any) -> OAuthServer:
    """Make ``sim`` an OAuth simulator; its static token no longer opens anything."""
    sim.token = "sim-internal-" + secrets.token_urlsafe(12)
    server = OAuthServer(sim, **options)
    sim.oauth = server
    return server
