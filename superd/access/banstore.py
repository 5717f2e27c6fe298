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
    """
    The ``bans`` table of one database file (or ``:memory:``).

    A file that does not exist yet is created by the first write, not
    before: until a source is banned there is nothing to keep, and an open
    SQLite database is memory an idle daemon need not hold.  Reads of a
    database that does not exist find it empty (and open it once another
    process -- ``superd bans`` -- has created it).
    """

    def __init__(self, path: str) -> None:
        if path != ":memory:":
            os.makedirs(os.path.dirname(path) or ".", mode=0o700, exist_ok=True)
        self.path = path
        self._db: sqlite3.Connection | None = None
        if path == ":memory:" or os.path.exists(path):
            self._open()

    def _open(self) -> sqlite3.Connection:
        db = sqlite3.connect(self.path, isolation_level=None, timeout=2.0)
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=NORMAL")
        db.execute(_SCHEMA)
        self._db = db
        return db

    def _existing(self) -> sqlite3.Connection | None:
        """The database if it exists (opened now if another process made it)."""
        if self._db is None and os.path.exists(self.path):
            return self._open()
        return self._db

    def _writable(self) -> sqlite3.Connection:
        return self._db if self._db is not None else self._open()

    def close(self) -> None:
        """Close the database."""
        if self._db is not None:
            self._db.close()

    def data_version(self) -> int:
        """Changes when another connection commits (SQLite's data_version)."""
        db = self._existing()
        if db is None:
            return 0
        return int(db.execute("PRAGMA data_version").fetchone()[0])

    def all(self) -> list[Ban]:
        """Every stored ban, expired or not, ordered by host."""
        db = self._existing()
        if db is None:
            return []
        rows = db.execute(
            "SELECT host, expires, added, service, hits FROM bans"
            " ORDER BY host")
        return [Ban(*row) for row in rows]

    def get(self, host: str) -> Ban | None:
        """The stored ban of ``host``, if any."""
        db = self._existing()
        if db is None:
            return None
        row = db.execute(
            "SELECT host, expires, added, service, hits FROM bans"
            " WHERE host = ?", (host,)).fetchone()
        return None if row is None else Ban(*row)

    def put(self, ban: Ban) -> None:
        """Insert or replace ``ban``."""
        self._writable().execute(
            "INSERT OR REPLACE INTO bans (host, expires, added, service, hits)"
            " VALUES (?, ?, ?, ?, ?)",
            (ban.host, ban.expires, ban.added, ban.service, ban.hits))

    def remove(self, host: str) -> bool:
        """Delete the ban of ``host``; True if there was one."""
        db = self._existing()
        if db is None:
            return False
        cursor = db.execute("DELETE FROM bans WHERE host = ?", (host,))
        return cursor.rowcount > 0

    def purge(self, now: float) -> int:
        """Delete bans that ended at or before ``now``; how many went."""
        db = self._existing()
        if db is None:
            return 0
        cursor = db.execute(
            "DELETE FROM bans WHERE expires IS NOT NULL AND expires <= ?",
            (now,))
        return cursor.rowcount
