"""Errors of the command line itself."""

from __future__ import annotations


class UsageError(Exception):
    """A problem with how the command was called: exit 2, one line on stderr."""
