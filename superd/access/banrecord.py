"""
One ban as the ban database stores it and ``superd status`` shows it, and
where the database lives.

Apart from ``superd.access.banstore`` (the SQLite table) so that the daemon
can hold, show and share bans without loading SQLite: a daemon whose state
directory has no database yet opens one only when it first stores a ban.
"""

from __future__ import annotations

import os

import attrs

__all__ = ["DB_NAME", "Ban", "db_path"]

DB_NAME = "bans.sqlite3"


@attrs.frozen
class Ban:
    """One banned source address."""

    host: str
    #: When the ban ends (seconds since the epoch); None = forever.
    expires: float | None
    added: float
    service: str = ""
    hits: int = 1
    #: Learnt from another host of the fleet, not made here: the first to
    #: go when the list is full.
    remote: bool = attrs.field(default=False, converter=bool)


def db_path(state_dir: str) -> str:
    """Where the bans database of ``state_dir`` lives."""
    return os.path.join(state_dir, DB_NAME)
