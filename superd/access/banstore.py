"""
The persistent store of sensor bans: one SQLite table in the state directory.

Used by the daemon (through ``BanList``, which serves lookups from memory)
and by ``superd bans`` (which edits the table while the daemon runs; the
daemon notices through ``PRAGMA data_version``).  WAL mode lets the two
read and write side by side.
"""

from __future__ import annotations

import os
import sqlite3

import attrs

__all__ = ["DB_NAME", "Ban", "BanStore", "db_path"]

DB_NAME = "bans.sqlite3"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS bans (
    host TEXT PRIMARY KEY,
    expires REAL,               -- seconds since the epoch; NULL = forever
    added REAL NOT NULL,
    service TEXT NOT NULL DEFAULT '',
    hits INTEGER NOT NULL DEFAULT 1
)
"""


@attrs.frozen
class Ban:
    """One banned source address."""

    host: str
    #: When the ban ends (seconds since the epoch); None = forever.
    expires: float | None
    added: float
    service: str = ""
    hits: int = 1


def db_path(state_dir: str) -> str:
    """Where the bans database of ``state_dir`` lives."""
    return os.path.join(state_dir, DB_NAME)


class BanStore:
    """The ``bans`` table of one database file (or ``:memory:``)."""

    def __init__(self, path: str) -> None:
        if path != ":memory:":
            os.makedirs(os.path.dirname(path) or ".", mode=0o700, exist_ok=True)
        self.path = path
        self._db = sqlite3.connect(path, isolation_level=None, timeout=2.0)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.execute(_SCHEMA)

    def close(self) -> None:
        """Close the database."""
        self._db.close()

    def data_version(self) -> int:
        """Changes when another connection commits (SQLite's data_version)."""
        return int(self._db.execute("PRAGMA data_version").fetchone()[0])

    def all(self) -> list[Ban]:
        """Every stored ban, expired or not, ordered by host."""
        rows = self._db.execute(
            "SELECT host, expires, added, service, hits FROM bans"
            " ORDER BY host")
        return [Ban(*row) for row in rows]

    def get(self, host: str) -> Ban | None:
        """The stored ban of ``host``, if any."""
        row = self._db.execute(
            "SELECT host, expires, added, service, hits FROM bans"
            " WHERE host = ?", (host,)).fetchone()
        return None if row is None else Ban(*row)

    def put(self, ban: Ban) -> None:
        """Insert or replace ``ban``."""
        self._db.execute(
            "INSERT OR REPLACE INTO bans (host, expires, added, service, hits)"
            " VALUES (?, ?, ?, ?, ?)",
            (ban.host, ban.expires, ban.added, ban.service, ban.hits))

    def remove(self, host: str) -> bool:
        """Delete the ban of ``host``; True if there was one."""
        cursor = self._db.execute("DELETE FROM bans WHERE host = ?", (host,))
        return cursor.rowcount > 0

    def purge(self, now: float) -> int:
        """Delete bans that ended at or before ``now``; how many went."""
        cursor = self._db.execute(
            "DELETE FROM bans WHERE expires IS NOT NULL AND expires <= ?",
            (now,))
        return cursor.rowcount
