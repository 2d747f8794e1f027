"""The soak suite (``make soak``): long runs with several worker processes. Its figures are
printed like the fault suite's (tests/faults/conftest.py)."""

from tests.faults.conftest import pytest_terminal_summary

__all__ = ["pytest_terminal_summary"]
