"""
The error that makes a spawned service a configuration error: its own module,
so the assembly can catch it without importing the spawn handlers for a
daemon that spawns nothing.
"""

from __future__ import annotations

__all__ = ["SpawnSetupError"]


class SpawnSetupError(Exception):
    """A service's children cannot be started as configured on this host;
    ``attribute`` is the line to fix."""

    def __init__(self, attribute: str, message: str) -> None:
        super().__init__(message)
        self.attribute = attribute
        self.message = message
