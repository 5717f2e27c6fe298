"""Tests for ``superd.access.state``: the access layer's daemon-wide state."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from superd.access.bans import BanList
from superd.access.factory import AccessControlledFactory
from superd.access.hostsaccess import HostsAccess
from tests.access.helpers import RecordingHandler, address, make_access, serve, service


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
    """If the database cannot be opened, bans still work (in memory, the
    database degraded) and it is logged once."""
    (tmp_path / "state").write_text("not a directory")
    access = make_access(tmp_path)
    access.bans.ban("10.0.0.1", 5, "trap")
    assert access.bans.is_banned("10.0.0.1")
    assert access.bans.database.state == "degraded"
    assert [e.get("state") for e in log_events if e.get("event") == "ban_database"] == [
        "degraded"]
    access.stopService()


def test_hosts_files_are_watched_until_stopped(tmp_path: Path) -> None:
    """The daemon's HostsAccess has a ChangeWatch (without one every connection
    would stat both files, and nothing else would show it); stopping closes it."""
    access = make_access(tmp_path)
    watch = access.hosts_changes
    assert watch is not None and access.hosts is not None and access.hosts.changes is watch
    access.stopService()
    assert watch._notify is None


def test_a_new_ban_ends_the_sources_sessions_on_every_service(
        tmp_path: Path, log_events: list[dict[str, Any]]) -> None:
    """A ban aborts the banned source's connections on every service, leaves
    the others alone, counts them per service and says how many it ended."""
    access = make_access(tmp_path)
    echo = AccessControlledFactory(service(id="echo"), RecordingHandler(), access)
    chargen = AccessControlledFactory(service(id="chargen", port=19), RecordingHandler(),
                                      access)
    banned = [serve(echo, "10.0.0.1"), serve(chargen, "10.0.0.1")]
    other = serve(echo, "10.0.0.2")
    access.bans.ban("10.0.0.1", 5, "trap")
    assert [t.aborted for t in banned] == [True, True] and not other.aborted
    assert [s.peer.host for s in access.counter.sessions() if s.peer] == ["10.0.0.2"]
    assert [access.counters.for_block(s.id, s.block_key).ended
            for s in (echo.service, chargen.service)] == [{"banned": 1}, {"banned": 1}]
    (ended,) = [e for e in log_events if e.get("event") == "sessions_ended"]
    assert (ended["count"], ended["peer_host"], ended["reason"]) == (2, "10.0.0.1", "banned")
    access.stopService()


def test_a_network_ban_ends_the_sessions_of_its_addresses(tmp_path: Path) -> None:
    """A sensor's /64 ban (v6_source_prefix) ends the sessions of every
    address in the /64, not those of the next one."""
    access = make_access(tmp_path)
    echo = AccessControlledFactory(service(id="echo"), RecordingHandler(), access)
    inside = [serve(echo, "2001:db8:1:2::1"), serve(echo, "2001:db8:1:2:ffff::9")]
    outside = serve(echo, "2001:db8:1:3::1")
    access.bans.ban("2001:db8:1:2::/64", 5, "trap")
    assert [t.aborted for t in inside] == [True, True] and not outside.aborted
    access.stopService()


def test_ban_ends_sessions_no_keeps_them(tmp_path: Path) -> None:
    """With ``ban_ends_sessions = no`` a ban refuses new connections only,
    as xinetd's does."""
    access = make_access(tmp_path)
    access.ban_ends_sessions = False
    factory = AccessControlledFactory(service(), RecordingHandler(), access)
    transport = serve(factory, "10.0.0.1")
    access.bans.ban("10.0.0.1", 5, "trap")
    assert not transport.aborted and len(access.counter.sessions()) == 1
    assert factory.buildProtocol(address("10.0.0.1")) is None
    access.stopService()


def test_end_sessions_by_predicate(tmp_path: Path) -> None:
    """end_sessions ends the sessions a predicate selects, each once, and
    says how many it ended."""
    access = make_access(tmp_path)
    factory = AccessControlledFactory(service(), RecordingHandler(), access)
    transports = [serve(factory, f"10.0.0.{n}") for n in (1, 2, 3)]
    odd = {"10.0.0.1", "10.0.0.3"}
    assert access.end_sessions(lambda s: s.peer is not None and s.peer.host in odd,
                               "reconfigured") == 2
    assert [t.aborted for t in transports] == [True, False, True]
    assert access.end_sessions(lambda s: True, "reconfigured") == 1
    assert access.end_sessions(lambda s: True, "reconfigured") == 0
    access.stopService()
