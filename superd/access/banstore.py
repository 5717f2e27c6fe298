"""
The persistent store of sensor bans: one SQLite table in the state directory.

Used by the daemon (through ``BanList``, which serves lookups from memory and
works on this store in a thread of its own, ``superd.access.bandb``) and by
``superd bans --offline`` (which edits the table directly; a running daemon
notices through ``PRAGMA data_version``).  WAL mode lets the two read and
write side by side.

A file that is not a usable database (truncated, overwritten, empty) raises
``DamagedDatabase`` when it is checked; it is never written to or replaced.
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Iterable

from superd.access.banrecord import DB_NAME, Ban, db_path

__all__ = ["DB_NAME", "Ban", "BanStore", "DamagedDatabase", "db_path"]

#: Seconds a statement waits for another process's lock before failing.
BUSY_TIMEOUT = 2.0

_SCHEMA = """
CREATE TABLE IF NOT EXISTS bans (
    host TEXT PRIMARY KEY,
    expires REAL,               -- seconds since the epoch; NULL = forever
    added REAL NOT NULL,
    service TEXT NOT NULL DEFAULT '',
    hits INTEGER NOT NULL DEFAULT 1,
    remote INTEGER NOT NULL DEFAULT 0  -- learnt from the fleet (Redis)
)
"""
_COLUMNS = "host, expires, added, service, hits, remote"


class DamagedDatabase(sqlite3.DatabaseError):
    """The file exists but is not a usable ban database."""


def _empty_file(path: str) -> bool:
    """True if ``path`` is an existing empty file with no write-ahead log:
    what is left of a truncated database (SQLite would take it for a new one)."""
    try:
        if os.stat(path).st_size:
            return False
    except OSError:
        return False
    try:
        return os.stat(path + "-wal").st_size == 0
    except OSError:
        return True


class BanStore:
    """The ``bans`` table of one database file (or ``:memory:``)."""

    def __init__(self, path: str, *, timeout: float = BUSY_TIMEOUT) -> None:
        if path != ":memory:":
            os.makedirs(os.path.dirname(path) or ".", mode=0o700, exist_ok=True)
            if _empty_file(path):
                raise DamagedDatabase("the file is empty (truncated?)")
        self.path = path
        # The daemon opens the store on the reactor thread and then uses it
        # only from its database thread, one operation at a time.
        self._db = sqlite3.connect(path, isolation_level=None, timeout=timeout,
                                   check_same_thread=False)
        try:
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.execute(_SCHEMA)
            self._upgrade()
        except sqlite3.Error as e:
            self._db.close()
            raise _as_damage(e) from None

    def _upgrade(self) -> None:
        """Add the ``remote`` column to a table made by an older superd."""
        columns = {row[1] for row in self._db.execute("PRAGMA table_info(bans)")}
        if "remote" not in columns:
            self._db.execute(
                "ALTER TABLE bans ADD COLUMN remote INTEGER NOT NULL DEFAULT 0")

    def close(self) -> None:
        """Close the database."""
        self._db.close()

    def check(self) -> None:
        """Raise ``DamagedDatabase`` unless SQLite finds the file intact, and
        an ``sqlite3.Error`` unless it can be written now."""
        try:
            rows = self._db.execute("PRAGMA quick_check(5)").fetchall()
        except sqlite3.Error as e:
            raise _as_damage(e) from None
        problems = [str(row[0]) for row in rows if row[0] != "ok"]
        if problems:
            raise DamagedDatabase("; ".join(problems))
        # A write that changes nothing, rolled back: a read-only file or
        # connection and a lock held by another process show here, not at
        # the next ban.
        self._db.execute("BEGIN IMMEDIATE")
        try:
            self._db.execute("DELETE FROM bans WHERE 0")
        finally:
            self._db.execute("ROLLBACK")

    def data_version(self) -> int:
        """Changes when another connection commits (SQLite's data_version)."""
        return int(self._db.execute("PRAGMA data_version").fetchone()[0])

    def all(self) -> list[Ban]:
        """Every stored ban, expired or not, ordered by host."""
        rows = self._db.execute(f"SELECT {_COLUMNS} FROM bans ORDER BY host")
        return [Ban(*row) for row in rows]

    def get(self, host: str) -> Ban | None:
        """The stored ban of ``host``, if any."""
        row = self._db.execute(
            f"SELECT {_COLUMNS} FROM bans WHERE host = ?", (host,)).fetchone()
        return None if row is None else Ban(*row)

    def put(self, ban: Ban) -> None:
        """Insert or replace ``ban``."""
        self._db.execute(
            f"INSERT OR REPLACE INTO bans ({_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?)",
            _row(ban))

    def write(self, puts: Iterable[Ban], deletes: Iterable[str]) -> None:
        """Insert or replace ``puts`` and delete ``deletes``, in one transaction."""
        self._db.execute("BEGIN IMMEDIATE")
        try:
            self._db.executemany(
                f"INSERT OR REPLACE INTO bans ({_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?)",
                map(_row, puts))
            self._db.executemany("DELETE FROM bans WHERE host = ?",
                                 ((host,) for host in deletes))
            self._db.execute("COMMIT")
        except BaseException:
            if self._db.in_transaction:
                try:
                    self._db.execute("ROLLBACK")
                except sqlite3.Error:
                    pass  # the first error is the one to report
            raise

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

    def purge_hosts(self, now: float) -> list[str]:
        """Delete bans that ended at or before ``now``; the hosts that went."""
        rows = self._db.execute(
            "DELETE FROM bans WHERE expires IS NOT NULL AND expires <= ? RETURNING host",
            (now,)).fetchall()
        return [str(row[0]) for row in rows]


def _as_damage(error: sqlite3.Error) -> sqlite3.Error:
    """``error`` as ``DamagedDatabase`` when it says the file is not a sound
    database (SQLite's NOTADB, CORRUPT); locks, I/O errors, a read-only or
    full disk are conditions of the moment (``OperationalError``) and stay."""
    if type(error) is sqlite3.DatabaseError:
        return DamagedDatabase(str(error))
    return error


def _row(ban: Ban) -> tuple[str, float | None, float, str, int, int]:
    return (ban.host, ban.expires, ban.added, ban.service, ban.hits, int(ban.remote))
