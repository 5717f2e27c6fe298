"""Fixtures shared by the spawn handler tests."""

from tests.proc.conftest import events

__all__ = ["events"]
