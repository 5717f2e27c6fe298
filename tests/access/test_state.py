"""Tests for ``superd.access.state``: the access layer's daemon-wide state."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from superd.access.bans import BanList
from superd.access.hostsaccess import HostsAccess
from tests.access.helpers import make_access


def test_open_access_keeps_bans_in_the_state_dir(tmp_path: Path) -> None:
    """The daemon's access state bans through SQLite in the state directory and
    reads the command line's hosts files; stopping it leaves no timer behind."""
    access = make_access(tmp_path)
    assert isinstance(access.bans, BanList)
    assert isinstance(access.hosts, HostsAccess)
    access.bans.ban("10.0.0.1", 5, "trap")  # the first ban creates the database
    assert os.path.exists(tmp_path / "state" / "bans.sqlite3")
    assert access.hosts.deny.path == str(tmp_path / "hosts.deny")
    access.stopService()
    assert not access.runtime.reactor.getDelayedCalls()  # type: ignore[attr-defined]


def test_unusable_state_dir_keeps_bans_in_memory(tmp_path: Path,
                                                 log_events: list[dict[str, Any]]) -> None:
    """If the database cannot be opened, bans still work (not persisted) and it is logged."""
    (tmp_path / "state").write_text("not a directory")
    access = make_access(tmp_path)
    access.bans.ban("10.0.0.1", 5, "trap")
    assert access.bans.is_banned("10.0.0.1")
    assert any(e.get("action") == "store_error" for e in log_events)
    access.stopService()


def test_hosts_files_are_watched_until_stopped(tmp_path: Path) -> None:
    """The daemon's HostsAccess has a ChangeWatch (without one every connection
    would stat both files, and nothing else would show it); stopping closes it."""
    access = make_access(tmp_path)
    watch = access.hosts_changes
    assert watch is not None and access.hosts is not None and access.hosts.changes is watch
    access.stopService()
    assert watch._notify is None
