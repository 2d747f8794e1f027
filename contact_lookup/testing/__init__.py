"""Test support shipped with the product, for connector packages: see ``contract``."""
