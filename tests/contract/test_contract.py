"""The promises every connector keeps, run once per built-in connector (conftest.ALL_CRMS).

The tests themselves live in ``contact_lookup.testing.contract`` so that plugin packages and
the REST templates (test_rest_templates.py) run exactly the same contract; the expected
answers there were worked out by hand from its contacts.json.
"""

from __future__ import annotations

from contact_lookup.testing.contract import ConnectorContract


class TestContract(ConnectorContract):
    """Uses the ``harness`` fixture of conftest.py, parametrised over every built-in CRM."""
