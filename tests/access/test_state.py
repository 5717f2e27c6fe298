"""Tests for ``superd.access.state``: the state attached to a Runtime."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from superd.access import state as setup
from superd.access.bans import BanList
from superd.access.hostsaccess import HostsAccess
from tests.access.helpers import make_runtime


def test_attach_opens_bans_in_the_state_dir(tmp_path: Path) -> None:
    """attach() sets runtime.bans (SQLite in state_dir) and runtime.hosts_access."""
    runtime = make_runtime(tmp_path)
    setup.attach(runtime)
    assert isinstance(runtime.bans, BanList)
    assert isinstance(runtime.hosts_access, HostsAccess)
    assert os.path.exists(tmp_path / "state" / "bans.sqlite3")
    assert runtime.hosts_access.deny.path == str(tmp_path / "hosts.deny")
    setup.detach(runtime)
    assert not runtime.reactor.getDelayedCalls()


def test_unusable_state_dir_keeps_bans_in_memory(tmp_path: Path,
                                                 log_events: list[dict[str, Any]]) -> None:
    """If the database cannot be opened, bans still work (not persisted) and it is logged."""
    (tmp_path / "state").write_text("not a directory")
    runtime = make_runtime(tmp_path)
    setup.attach(runtime)
    runtime.bans.ban("10.0.0.1", 5, "trap")
    assert runtime.bans.is_banned("10.0.0.1")
    assert any(e.get("action") == "store_error" for e in log_events)
    setup.detach(runtime)


def test_state_is_per_runtime(tmp_path: Path) -> None:
    """Each runtime has its own state, kept for its lifetime."""
    first, second = make_runtime(tmp_path), make_runtime(tmp_path)
    assert setup.state_of(first) is setup.state_of(first)
    assert setup.state_of(first) is not setup.state_of(second)
