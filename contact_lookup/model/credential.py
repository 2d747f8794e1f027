"""What a connector is given to authenticate: a prepared credential (the spec's ``authHeader``).

``access_token`` is the secret the connector sends (an API key, or an OAuth access token the
core has just made sure is fresh). ``base_url`` is set when the authorisation server names
the API host itself: Salesforce's ``instance_url`` and Pipedrive's ``api_domain``, both
returned with every token (Salesforce "OAuth 2.0 Refresh Token Flow"; Pipedrive "OAuth
authorization: step 5"), and then replaces the connection's own ``base_url`` for requests.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Credential:
    access_token: str = field(repr=False)
    base_url: str | None = None
