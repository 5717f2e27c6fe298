"""Tests for ``superd.access.bans`` and ``banstore``: sensor bans that persist."""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any

from twisted.internet.task import Clock

from superd.access.bans import BanList
from superd.access.banstore import Ban, BanStore, db_path
from superd.config.model import FOREVER


def open_list(tmp_path: Path, clock: Clock) -> BanList:
    return BanList(BanStore(db_path(str(tmp_path / "state"))), clock)


def test_ban_expires_after_deny_time(tmp_path: Path) -> None:
    """A ban lasts deny_time minutes and then lapses on lookup."""
    clock = Clock()
    bans = open_list(tmp_path, clock)
    bans.ban("10.0.0.3", 2, "trap")
    assert bans.is_banned("10.0.0.3")
    assert not bans.is_banned("10.0.0.4")
    clock.advance(119)
    assert bans.is_banned("10.0.0.3")
    clock.advance(1)
    assert not bans.is_banned("10.0.0.3")
    assert len(bans) == 0


def test_never_and_forever(tmp_path: Path) -> None:
    """deny_time 0 bans nobody; FOREVER never lapses."""
    clock = Clock()
    bans = open_list(tmp_path, clock)
    bans.ban("10.0.0.3", 0, "trap")
    assert not bans.is_banned("10.0.0.3")
    bans.ban("10.0.0.4", FOREVER, "trap")
    clock.advance(10 ** 9)
    assert bans.expiry("10.0.0.4") == math.inf


def test_repeat_hit_extends(tmp_path: Path, log_events: list[dict[str, Any]]) -> None:
    """A hit during a ban moves its end to now + deny_time; the extension is
    written and logged once it adds a minute (a flood is not a write flood)."""
    clock = Clock()
    bans = open_list(tmp_path, clock)
    bans.ban("10.0.0.3", 1, "trap")
    clock.advance(50)
    bans.ban("10.0.0.3", 1, "trap")
    assert bans.expiry("10.0.0.3") == 110
    stored = bans.store.get("10.0.0.3")
    assert stored is not None and (stored.expires, stored.hits) == (60, 1)
    clock.advance(10)
    bans.ban("10.0.0.3", 1, "trap")  # now 60 s past what is stored: written
    assert bans.expiry("10.0.0.3") == 120
    stored = bans.store.get("10.0.0.3")
    assert stored is not None and (stored.expires, stored.hits) == (120, 2)
    lines = [e["log_format"].format(**e) for e in log_events if e.get("event") == "ban"]
    assert lines == [
        "Adding 10.0.0.3 to the global_no_access list for 1 minutes",
        "Extending: Adding 10.0.0.3 to the global_no_access list for 1 minutes",
    ]


def test_bans_survive_reopening(tmp_path: Path) -> None:
    """A new BanList on the same state directory sees the unexpired bans."""
    clock = Clock()
    clock.advance(1000)
    first = open_list(tmp_path, clock)
    first.ban("10.0.0.3", 5, "trap")
    first.ban("10.0.0.9", FOREVER, "trap")
    first.ban("10.0.0.7", 1, "trap")
    first.stop()
    clock.advance(120)
    second = open_list(tmp_path, clock)
    assert second.is_banned("10.0.0.3") and second.is_banned("10.0.0.9")
    assert not second.is_banned("10.0.0.7")


def test_external_changes_are_picked_up_by_polling(tmp_path: Path) -> None:
    """Another connection's add/remove is applied within a poll interval."""
    clock = Clock()
    bans = open_list(tmp_path, clock)
    bans.start()
    other = BanStore(db_path(str(tmp_path / "state")))
    other.put(Ban("10.0.0.5", None, 0.0, "cli"))
    assert not bans.is_banned("10.0.0.5")
    clock.advance(1)
    assert bans.is_banned("10.0.0.5")
    other.remove("10.0.0.5")
    clock.advance(1)
    assert not bans.is_banned("10.0.0.5")
    bans.stop()
    assert not clock.getDelayedCalls()


def test_periodic_purge_deletes_expired_rows(tmp_path: Path,
                                            log_events: list[dict[str, Any]]) -> None:
    """Expired bans are removed from the database by the periodic purge,
    with xinetd's log lines."""
    clock = Clock()
    bans = open_list(tmp_path, clock)
    bans.start()
    bans.ban("10.0.0.3", 1, "trap")
    bans.ban("10.0.0.4", 2, "trap")
    clock.pump([1.0] * 61)
    assert [b.host for b in bans.store.all()] == ["10.0.0.4"]
    clock.pump([1.0] * 60)
    assert bans.store.all() == []
    bans.stop()
    texts = [e["log_format"] for e in log_events if e.get("action") in ("expire", "empty")]
    assert texts == ["At least 1 DENY_TIME has expired, global_no_access list updated",
                     "At least 1 DENY_TIME has expired, global_no_access list updated",
                     "global_no_access list is empty."]


def test_unban(tmp_path: Path) -> None:
    """unban lifts a ban in memory and on disk."""
    bans = open_list(tmp_path, Clock())
    bans.ban("10.0.0.3", FOREVER, "trap")
    assert bans.unban("10.0.0.3")
    assert not bans.is_banned("10.0.0.3")
    assert bans.store.get("10.0.0.3") is None
    assert not bans.unban("10.0.0.3")


def test_wal_mode(tmp_path: Path) -> None:
    """The database is in WAL mode so the CLI and the daemon do not block."""
    store = BanStore(db_path(str(tmp_path)))
    store.put(Ban("10.0.0.1", None, 0.0))
    assert store._db is not None
    mode = store._db.execute("PRAGMA journal_mode").fetchone()[0]
    assert mode == "wal"


def test_database_is_created_by_the_first_ban(tmp_path: Path) -> None:
    """Until something is banned no database exists (nothing is kept open):
    reads find it empty, purges do nothing; the first ban creates it, and a
    database another process creates meanwhile is found."""
    path = db_path(str(tmp_path / "state"))
    store = BanStore(path)
    assert store.all() == [] and store.get("10.0.0.1") is None
    assert store.purge(1e12) == 0 and not store.remove("10.0.0.1")
    assert store.data_version() == 0 and not os.path.exists(path) and store._db is None
    BanStore(path).put(Ban("10.0.0.2", None, 5.0, "trap"))  # superd bans, say
    assert [b.host for b in store.all()] == ["10.0.0.2"] and store._db is not None
    fresh = BanStore(db_path(str(tmp_path / "other")))
    fresh.put(Ban("10.0.0.3", None, 5.0))
    assert os.path.exists(db_path(str(tmp_path / "other")))
