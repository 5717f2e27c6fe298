"""Attach the daemon-wide access state (bans, hosts.allow/deny) to a Runtime."""

from __future__ import annotations

from superd.runtime import Runtime

__all__ = ["attach"]


def attach(runtime: Runtime) -> None:
    """Set ``runtime.bans`` and ``runtime.hosts_access``."""
