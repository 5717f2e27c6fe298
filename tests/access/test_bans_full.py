"""
A full ban list (``superd.access.bans``): a ban made here always goes in --
fleet bans make room first, the soonest to end first, then this host's own;
bans made by hand are never pushed out; a fleet ban never pushes out one
made here.
"""

from __future__ import annotations

import math
from typing import Any

import pytest
from twisted.internet.task import Clock

from superd.access import bans as bans_module
from superd.access.bans import OPERATOR_SERVICE, BanList
from superd.access.banstore import BanStore

NOW = 1_800_000_000.0


@pytest.fixture
def small(monkeypatch: pytest.MonkeyPatch) -> int:
    """A list that holds 4 bans."""
    monkeypatch.setattr(bans_module, "MAX_BANS", 4)
    return 4


def new_list() -> tuple[BanList, Clock]:
    clock = Clock()
    clock.advance(NOW)
    return BanList(BanStore(":memory:"), clock), clock


def stored_hosts(bans: BanList) -> set[str]:
    assert bans.store is not None
    return {ban.host for ban in bans.store.all()}


def test_sensor_ban_evicts_the_soonest_ending_fleet_ban(
        small: int, log_events: list[dict[str, Any]]) -> None:
    """A list full of fleet bans takes a sensor's ban: the fleet ban that
    ends first goes, from memory and the database, and it is logged."""
    bans, _ = new_list()
    for n, minutes in enumerate([30, 5, 60, 10]):
        assert bans.merge(f"10.0.0.{n}", NOW + 60 * minutes, "elsewhere")
    assert bans.full
    bans.ban("10.9.9.9", 1, "trap")
    assert bans.is_banned("10.9.9.9")
    assert not bans.is_banned("10.0.0.1")  # the 5-minute one
    assert stored_hosts(bans) == {"10.0.0.0", "10.0.0.2", "10.0.0.3", "10.9.9.9"}
    assert bans.counts["evicted_remote"] == 1
    evicted = [e for e in log_events if e.get("action") == "evict"]
    assert [(e["peer_host"], e["kind"]) for e in evicted] == [("10.0.0.1", "remote")]
    assert not [e for e in log_events if e.get("action") == "full"]


def test_fleet_bans_go_before_local_ones_even_if_they_last_longer(small: int) -> None:
    """A forever fleet ban is evicted before a local ban that ends in a minute."""
    bans, _ = new_list()
    bans.ban("10.0.1.1", 1, "trap")
    bans.ban("10.0.1.2", 1, "trap")
    bans.ban("10.0.1.3", 1, "trap")
    assert bans.merge("10.0.0.9", math.inf, "elsewhere")
    bans.ban("10.9.9.9", 1, "trap")
    assert not bans.is_banned("10.0.0.9")
    assert all(bans.is_banned(h) for h in ("10.0.1.1", "10.0.1.2", "10.0.1.3", "10.9.9.9"))


def test_full_of_local_bans_evicts_the_soonest_ending(small: int) -> None:
    """With only this host's bans, the one ending first makes room; a sensor
    hit is never refused."""
    bans, clock = new_list()
    for n, minutes in enumerate([10, 2, 30, 20]):
        bans.ban(f"10.0.1.{n}", minutes, "trap")
    bans.ban("10.9.9.9", 5, "trap")
    assert not bans.is_banned("10.0.1.1")
    assert bans.is_banned("10.9.9.9")
    assert bans.counts == {"evicted_remote": 0, "evicted_local": 1,
                           "refused_remote": 0, "refused": 0}


def test_extension_is_seen_by_eviction(small: int) -> None:
    """A ban extended in memory (not yet written) is ranked by its new end."""
    bans, clock = new_list()
    for n in range(4):
        bans.ban(f"10.0.1.{n}", 10, "trap")
    clock.advance(30)
    bans.ban("10.0.1.0", 10, "trap")  # +30 s: kept in memory only
    bans.ban("10.9.9.9", 10, "trap")
    assert bans.is_banned("10.0.1.0")
    assert not bans.is_banned("10.0.1.1")


def test_operator_bans_are_never_evicted(small: int,
                                         log_events: list[dict[str, Any]]) -> None:
    """Bans made by hand stay; if they fill the list, a sensor's new ban is
    refused and logged ("ban list full")."""
    bans, _ = new_list()
    for n in range(3):
        bans.ban(f"10.0.2.{n}", 1, OPERATOR_SERVICE)
    bans.ban("10.0.1.1", 60, "trap")
    bans.ban("10.9.9.9", 1, "trap")  # evicts the sensor ban, not a hand-made one
    assert not bans.is_banned("10.0.1.1")
    assert all(bans.is_banned(f"10.0.2.{n}") for n in range(3))
    bans.ban(f"10.0.2.{3}", 1, OPERATOR_SERVICE)  # evicts 10.9.9.9
    bans.ban("10.8.8.8", 1, "trap")
    assert not bans.is_banned("10.8.8.8")
    assert bans.counts["refused"] == 1
    assert [e["peer_host"] for e in log_events if e.get("action") == "full"] == ["10.8.8.8"]


def test_fleet_ban_never_evicts_a_local_one(small: int,
                                            log_events: list[dict[str, Any]]) -> None:
    """Full of this host's bans, fleet bans are refused and counted; the log
    says so once a minute, not once per ban."""
    bans, clock = new_list()
    for n in range(4):
        bans.ban(f"10.0.1.{n}", 10, "trap")
    for n in range(50):
        assert not bans.merge(f"10.0.3.{n}", math.inf, "elsewhere")
    assert len(bans) == 4 and bans.counts["refused_remote"] == 50
    clock.advance(61)
    assert not bans.merge("10.0.3.99", math.inf, "elsewhere")
    lines = [e for e in log_events if e.get("action") == "full_remote"]
    assert [e["count"] for e in lines] == [1, 51]


def test_fleet_ban_replaces_only_a_sooner_ending_fleet_ban(small: int) -> None:
    """In a list full of fleet bans, a new fleet ban goes in only in place
    of one that ends before it."""
    bans, _ = new_list()
    for n in range(4):
        assert bans.merge(f"10.0.0.{n}", NOW + 600 + n, "elsewhere")
    assert not bans.merge("10.0.3.1", NOW + 300, "elsewhere")
    assert bans.merge("10.0.3.2", NOW + 900, "elsewhere")
    assert not bans.is_banned("10.0.0.0") and bans.is_banned("10.0.3.2")


def test_expired_bans_make_room_without_evicting(small: int) -> None:
    """A ban that has ended is not an eviction."""
    bans, clock = new_list()
    for n in range(4):
        bans.ban(f"10.0.1.{n}", 1, "trap")
    clock.advance(61)
    bans.ban("10.9.9.9", 1, "trap")
    assert bans.is_banned("10.9.9.9")
    assert bans.counts["evicted_local"] == 0


def test_sensor_hit_on_a_fleet_ban_makes_it_local(small: int) -> None:
    """A sensor hit on a source the fleet banned makes the ban this host's
    own (stored so): it then outranks fleet bans."""
    bans, _ = new_list()
    assert bans.merge("10.0.0.1", NOW + 3600, "elsewhere")
    bans.ban("10.0.0.1", 1, "trap")
    assert bans.store is not None
    stored = bans.store.get("10.0.0.1")
    assert stored is not None and not stored.remote and stored.expires == NOW + 3600
    for n in range(3):
        assert bans.merge(f"10.0.3.{n}", math.inf, "elsewhere")
    bans.ban("10.9.9.9", 1, "trap")
    assert bans.is_banned("10.0.0.1")


def test_fleet_extension_keeps_a_local_ban_local(small: int) -> None:
    """The fleet extending this host's ban leaves it this host's (and its service)."""
    bans, _ = new_list()
    bans.ban("10.0.0.1", 1, "trap")
    assert bans.merge("10.0.0.1", NOW + 3600, "elsewhere")
    assert bans.store is not None
    stored = bans.store.get("10.0.0.1")
    assert stored is not None and not stored.remote and stored.service == "trap"


def test_origin_survives_a_restart(small: int, tmp_path: Any) -> None:
    """Fleet bans are stored as such: after a restart they still go first."""
    clock = Clock()
    clock.advance(NOW)
    path = str(tmp_path / "bans.sqlite3")
    first = BanList(BanStore(path), clock)
    first.merge("10.0.0.1", math.inf, "elsewhere")
    for n in range(3):
        first.ban(f"10.0.1.{n}", 1, "trap")
    first.stop()
    again = BanList(BanStore(path), clock)
    again.ban("10.9.9.9", 1, "trap")
    assert not again.is_banned("10.0.0.1")
    assert [b.remote for b in again.entries()] == [False, False, False, False]


def test_entries_are_the_bans_in_force() -> None:
    """``entries`` lists what is enforced, with unwritten extensions, sorted."""
    bans, clock = new_list()
    bans.ban("10.0.0.2", 1, "trap")
    bans.merge("10.0.0.1", math.inf, "elsewhere")
    clock.advance(30)
    bans.ban("10.0.0.2", 1, "trap")  # extension kept in memory
    rows = [(b.host, b.expires, b.service, b.remote) for b in bans.entries()]
    assert rows == [("10.0.0.1", None, "elsewhere", True),
                    ("10.0.0.2", NOW + 90, "trap", False)]
    clock.advance(91)
    assert [b.host for b in bans.entries()] == ["10.0.0.1"]


def test_entry_is_one_ban_in_force() -> None:
    """``entry`` answers for one host what ``entries`` lists."""
    bans, clock = new_list()
    bans.ban("10.0.0.2", 1, "trap")
    clock.advance(30)
    bans.ban("10.0.0.2", 1, "trap")
    assert bans.entry("10.0.0.2") == bans.entries()[0]
    assert bans.entry("10.0.0.9") is None
    clock.advance(91)
    assert bans.entry("10.0.0.2") is None
