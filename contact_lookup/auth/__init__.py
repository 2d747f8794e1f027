"""CRM authorisation that lasts: the OAuth token store, refresh across workers, revocation.

    crypto.py     Fernet / MultiFernet encryption of tokens at rest (TOKEN_ENCRYPTION_KEY)
    vendors.py    each CRM's documented OAuth facts: endpoints, client authentication, extras
    endpoint.py   the token endpoint client: refresh, authorization-code and JWT bearer grants
    store.py      the token store in Redis (STATE_URL, never evicted), encrypted
    manager.py    ``TokenManager``: a fresh credential per lookup, one refresh at a time
    flows.py      what the ``contact-lookup auth`` commands do (connect, seed, status, revoke)

Layering: ``contact_lookup.compose`` builds a ``TokenManager`` and hands it to the connector
factory as its credential source; the core asks the factory for a connector (the proactive
refresh happens there, before the connector is called) and, once, for a renewed one after a
401. Nothing here imports a vendor connector.
"""
