"""Tests for ``superd.access.bans``: who hears of a ban starting or lifted
(the sessions it ends, the fleet), and what is in force."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from twisted.internet.task import Clock

from superd.access.bans import BanList
from superd.access.banstore import Ban, BanStore, db_path
from superd.config.model import FOREVER


def open_list(tmp_path: Path, clock: Clock) -> BanList:
    return BanList(BanStore(db_path(str(tmp_path / "state"))), clock)


def test_a_ban_starting_is_told_whatever_made_it(tmp_path: Path) -> None:
    """New-ban listeners hear of a sensor's or the operator's ban, a fleet
    ban merged here and one another process wrote to the database -- once
    each: an extension is not a new ban."""
    clock = Clock()
    clock.advance(1000)
    bans = open_list(tmp_path, clock)
    started: list[str] = []
    bans.new_ban_listeners.append(started.append)
    bans.ban("10.0.0.1", 5, "trap")
    bans.ban("10.0.0.1", 10, "trap")  # extended
    bans.ban("10.0.0.2", FOREVER, "superd bans", source="operator")
    assert bans.merge("10.0.0.3", 2000.0, "fleet")
    assert bans.merge("10.0.0.3", 3000.0, "fleet")  # extended
    other = BanStore(db_path(str(tmp_path / "state")))
    other.put(Ban("10.0.0.4", None, 1000.0, "superd bans", 1))
    assert bans.refresh()
    assert started == ["10.0.0.1", "10.0.0.2", "10.0.0.3", "10.0.0.4"]


def test_a_ban_after_one_expired_is_new(tmp_path: Path) -> None:
    """A source banned again once its ban lapsed is told as a new ban."""
    clock = Clock()
    bans = open_list(tmp_path, clock)
    started: list[str] = []
    bans.new_ban_listeners.append(started.append)
    bans.ban("10.0.0.1", 1, "trap")
    clock.advance(61)
    bans.ban("10.0.0.1", 1, "trap")
    assert bans.merge("10.0.0.2", 100.0, "fleet")
    clock.advance(100)
    assert bans.merge("10.0.0.2", 300.0, "fleet")
    assert started == ["10.0.0.1", "10.0.0.1", "10.0.0.2", "10.0.0.2"]


def test_operator_bans_and_lifts_are_logged_as_theirs(
        tmp_path: Path, log_events: list[dict[str, Any]]) -> None:
    """A ban made by hand is a ``ban`` event with ``source = operator``; a
    lift by hand is stored, told to the removal listeners (the fleet) and
    logged; lifting a source that is not banned tells nobody."""
    clock = Clock()
    bans = open_list(tmp_path, clock)
    removed: list[str] = []
    bans.removal_listeners.append(removed.append)
    bans.ban("10.0.0.1", FOREVER, "superd bans", source="operator")
    assert bans.lift("10.0.0.1", "operator") is True
    assert bans.lift("10.0.0.1", "operator") is False
    assert not bans.is_banned("10.0.0.1") and bans.store.get("10.0.0.1") is None
    assert removed == ["10.0.0.1"]
    logged = [(e["action"], e["source"], e["log_format"].format(**e))
              for e in log_events if e.get("event") == "ban"]
    assert logged == [
        ("add", "operator",
         "Adding 10.0.0.1 to the global_no_access list forever (operator)"),
        ("lift", "operator",
         "Removing 10.0.0.1 from the global_no_access list (operator)"),
    ]


def test_in_force_is_every_unexpired_ban(tmp_path: Path) -> None:
    """in_force() maps each banned host to its end (inf: forever), without
    the lapsed ones."""
    clock = Clock()
    bans = open_list(tmp_path, clock)
    bans.ban("10.0.0.1", 1, "trap")
    bans.ban("10.0.0.2", FOREVER, "trap")
    bans.ban("10.0.0.3", 5, "trap")
    clock.advance(60)
    assert bans.in_force() == {"10.0.0.2": math.inf, "10.0.0.3": 300.0}
