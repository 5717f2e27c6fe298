"""Tests for ``superd.access.recheck``: a reload ends the live sessions its
new rules refuse."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import attrs
from twisted.internet.defer import Deferred

from superd.access.factory import AccessControlledFactory
from superd.access.recheck import recheck_sessions
from superd.access.resolver import HostNames
from superd.config.model import AddressKind, AddressSpec, ServiceConfig, TimeInterval
from tests.access.helpers import RecordingHandler, make_access, serve, service, specs


def result(d: Deferred[int]) -> int:
    done: list[int] = []
    d.addCallback(done.append)
    assert done, "the re-check is still waiting"
    return done[0]


def served(access: Any, config: ServiceConfig, *hosts: str) -> list[Any]:
    factory = AccessControlledFactory(config, RecordingHandler(), access)
    return [serve(factory, host) for host in hosts]


def test_a_source_the_new_address_lists_refuse_is_ended(
        tmp_path: Path, log_events: list[dict[str, Any]]) -> None:
    """A source newly in no_access loses its sessions (reason
    ``reconfigured``, counted); other sources and other services keep theirs."""
    access = make_access(tmp_path)
    old = service(port=7)
    kept = service(id="other", port=9)
    transports = served(access, old, "10.0.0.1", "10.0.0.2", "10.0.0.1")
    (elsewhere,) = served(access, kept, "10.0.0.1")
    new = attrs.evolve(old, no_access=specs("10.0.0.1"))
    assert result(recheck_sessions(access, [new, kept])) == 2
    assert [t.aborted for t in transports] == [True, False, True]
    assert not elsewhere.aborted
    assert access.counters.for_block("svc", old.block_key).ended == {"reconfigured": 2}
    (ended,) = [e for e in log_events if e.get("event") == "sessions_ended"]
    assert (ended["count"], ended["reason"]) == (2, "reconfigured")
    access.stopService()


def test_hosts_deny_and_access_times_are_re_applied(tmp_path: Path) -> None:
    """Sessions from a source hosts.deny now names, and every session of a
    service now outside its access_times, are ended."""
    access = make_access(tmp_path)
    libwrapped = service(port=7, flags=frozenset())
    timed = service(id="timed", port=9)
    deny_me, keep_me = served(access, libwrapped, "10.0.0.1", "10.0.0.2")
    (late,) = served(access, timed, "10.0.0.2")
    (tmp_path / "hosts.deny").write_text("ALL: 10.0.0.1\n")
    now = time.localtime(access.runtime.seconds())
    minute = now.tm_hour * 60 + now.tm_min
    closed = TimeInterval((minute + 60) % 1440, (minute + 120) % 1440)
    assert result(recheck_sessions(
        access, [libwrapped, attrs.evolve(timed, access_times=(closed,))])) == 2
    assert (deny_me.aborted, keep_me.aborted, late.aborted) == (True, False, True)
    access.stopService()


def test_lowered_instances_end_the_newest_sessions(tmp_path: Path) -> None:
    """instances lowered below the live count ends the newest sessions."""
    access = make_access(tmp_path)
    old = service(port=7)
    transports = served(access, old, "10.0.0.1", "10.0.0.2", "10.0.0.3", "10.0.0.4")
    assert result(recheck_sessions(access, [attrs.evolve(old, instances=2)])) == 2
    assert [t.aborted for t in transports] == [False, False, True, True]
    assert result(recheck_sessions(access, [attrs.evolve(old, instances=2)])) == 0
    access.stopService()


def test_a_changed_bind_is_matched_by_id(tmp_path: Path) -> None:
    """A session of a block whose bind changed is checked against the one
    block that now has its id; a service that is gone is left alone."""
    access = make_access(tmp_path)
    old = service(port=7, bind=("127.0.0.1",))
    gone = service(id="gone", port=9)
    (moved,) = served(access, old, "10.0.0.1")
    (orphan,) = served(access, gone, "10.0.0.1")
    new = attrs.evolve(old, bind=("127.0.0.2",), no_access=specs("10.0.0.1"))
    assert new.block_key != old.block_key
    assert result(recheck_sessions(access, [new])) == 1
    assert moved.aborted and not orphan.aborted
    access.stopService()


def test_a_name_rule_ends_a_session_once_answered(tmp_path: Path) -> None:
    """A rule that needs the source's name ends its session when the lookup
    answers, and only then is the re-check done."""
    waiting: list[Deferred[HostNames]] = []

    def lookups(call: Any) -> Deferred[HostNames]:
        waiting.append(Deferred())
        return waiting[-1]

    access = make_access(tmp_path, lookups=lookups)
    old = service(port=7)
    (transport,) = served(access, old, "10.0.0.1")
    domain = AddressSpec(".example.com", AddressKind.DOMAIN, name="example.com")
    checking = recheck_sessions(access, [attrs.evolve(old, no_access=(domain,))])
    done: list[int] = []
    checking.addCallback(done.append)
    assert done == [] and not transport.aborted
    waiting[0].callback(HostNames(frozenset({"a.example.com"})))
    assert done == [1] and transport.aborted
    access.stopService()
