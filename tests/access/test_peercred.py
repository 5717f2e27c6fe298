"""
Tests for ``superd.access.peercred`` and for how the access layer treats a
UNIX socket's peers: admitted or refused by uid and groups, counted per uid,
logged as ``uid:N``, never asked hosts.allow/deny or identd.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import attrs
import pytest

from superd.access.factory import AccessControlledFactory
from superd.access.ident import wants_userid
from superd.access.peercred import PeerCredentialsPolicy
from superd.access.pipeline import source_checks
from superd.access.recheck import recheck_sessions
from superd.access.state import AccessState
from superd.config.model import ServiceConfig, UnixSocket
from superd.core.session import Peer, UnixPeer
from superd.net.takingport import TAKEN
from superd.observe import events
from tests.access.helpers import (
    AbortableTransport,
    RecordingHandler,
    fail_lines,
    make_access,
    service,
)

ALICE = UnixPeer.of(1000, 1000, 4242, (1000, 27), "/run/s.sock")
BOB = UnixPeer.of(1001, 1001, 4343, (1001,), "/run/s.sock")
ROOT = UnixPeer.of(0, 0, 1, (), "/run/s.sock")


def unix_service(**changes: Any) -> ServiceConfig:
    """A stream builtin on /run/s.sock, as the loader builds it."""
    return service(unix=UnixSocket("/run/s.sock"), protocol="unix", port=None,
                   flags=frozenset(), **changes)


@pytest.fixture
def access(tmp_path: Path) -> Iterator[AccessState]:
    # hosts files exist (and deny everyone): a UNIX service must not ask them.
    (tmp_path / "hosts.deny").write_text("ALL: ALL\n")
    state = make_access(tmp_path)
    yield state
    state.stopService()


def test_uid_or_any_group_admits() -> None:
    """only_uid lists uids, only_gid groups (primary or supplementary); a
    peer listed by either is admitted."""
    policy = PeerCredentialsPolicy(frozenset({0}), frozenset({27}))
    assert policy.check(ROOT, 0).allowed
    assert policy.check(ALICE, 0).allowed  # supplementary group 27
    refused = policy.check(BOB, 0)
    assert not refused.allowed and refused.reason == events.REASON_CREDENTIALS
    only_uid = PeerCredentialsPolicy(frozenset({1001}), None)
    assert only_uid.check(BOB, 0).allowed and not only_uid.check(ALICE, 0).allowed
    only_gid = PeerCredentialsPolicy(None, frozenset({1000}))
    assert only_gid.check(ALICE, 0).allowed and not only_gid.check(BOB, 0).allowed


def test_peers_without_credentials_are_refused() -> None:
    """An IP peer, or a UNIX peer whose credentials were unreadable (-1)."""
    policy = PeerCredentialsPolicy(frozenset({0}), frozenset({0}))
    assert not policy.check(Peer("127.0.0.1", 1), 0).allowed
    assert not policy.check(UnixPeer.of(-1, -1, 0), 0).allowed


def test_a_unix_service_asks_credentials_not_hosts_files(access: AccessState) -> None:
    """source_checks of a UNIX service: its credentials policy, no
    hosts.allow/deny (which would deny everyone here); an IP service keeps them."""
    checks = source_checks(unix_service(only_uid=frozenset({0})), access)
    assert [type(p).__name__ for p in checks] == ["PeerCredentialsPolicy"]
    assert source_checks(unix_service(), access) == []
    ip = service(flags=frozenset())
    assert [type(p).__name__ for p in source_checks(ip, access)] == ["HostsAccessPolicy"]


def test_no_ident_lookup_for_unix_peers() -> None:
    """USERID (even inherited) never asks identd about a UNIX peer."""
    svc = unix_service(log_on_success=frozenset({"USERID"}),
                       log_on_failure=frozenset({"USERID"}))
    assert not wants_userid(svc, admitted=True) and not wants_userid(svc, admitted=False)


def _factory(access: AccessState, **changes: Any) -> tuple[AccessControlledFactory,
                                                           RecordingHandler]:
    changes.setdefault("log_on_failure", frozenset({"HOST"}))
    handler = RecordingHandler()
    return AccessControlledFactory(unix_service(**changes), handler, access), handler


def test_refused_uid_logs_fail_with_credentials(access: AccessState,
                                                log_events: list[dict[str, Any]]) -> None:
    """A peer only_uid does not list is refused: FAIL ``credentials``
    ``from=uid:N``, the event carrying its uid, gid and pid."""
    factory, handler = _factory(access, only_uid=frozenset({0}))
    assert factory.buildProtocol(BOB) is None
    assert factory.buildProtocol(ROOT) is not None
    assert len(handler.sessions) == 1 and handler.sessions[0].peer == ROOT
    assert fail_lines(log_events) == ["FAIL: svc credentials from=uid:1001"]
    (refusal,) = [e for e in log_events if e.get("event") == events.EV_REFUSE]
    assert (refusal["peer_uid"], refusal["peer_gid"], refusal["peer_pid"]) == (1001, 1001, 4343)


def test_per_source_counts_per_uid(access: AccessState) -> None:
    """per_source = 1: one session per uid, whatever the pid."""
    factory, handler = _factory(access, per_source=1)
    assert factory.buildProtocol(ALICE) is not None
    assert factory.buildProtocol(attrs.evolve(ALICE, pid=9999)) is None
    assert factory.buildProtocol(BOB) is not None
    handler.sessions[0].end()
    assert factory.buildProtocol(attrs.evolve(ALICE, pid=9999)) is not None


class Taker(RecordingHandler):
    def serve_fd(self, session: Any, fd: int) -> None:
        self.sessions.append(session)


def test_take_connection_accepts_the_unix_peer(access: AccessState) -> None:
    """A UNIX port passes the UnixPeer itself where a TCP port passes the
    address tuple; the session keeps it, credentials and all."""
    handler = Taker()
    factory = AccessControlledFactory(unix_service(), handler, access)
    assert factory.take_connection is not None
    local = Peer("/run/s.sock", 0)
    assert factory.take_connection(7, ALICE, local) is TAKEN
    (session,) = handler.sessions
    assert session.peer is ALICE and session.local == local


def test_a_reload_ends_sessions_the_new_lists_refuse(tmp_path: Path) -> None:
    """recheck_sessions applies a new only_uid to live UNIX sessions: the
    uid no longer listed loses its session, a listed one keeps it."""
    access = make_access(tmp_path)
    old = unix_service(only_uid=frozenset({1000, 1001}))
    factory = AccessControlledFactory(old, RecordingHandler(), access)
    transports = []
    for peer in (ALICE, BOB):
        protocol = factory.buildProtocol(peer)
        assert protocol is not None
        transport = AbortableTransport()
        transport.protocol = protocol
        protocol.makeConnection(transport)
        transports.append(transport)
    new = attrs.evolve(old, only_uid=frozenset({1000}))
    ended: list[int] = []
    recheck_sessions(access, [new]).addCallback(ended.append)
    assert ended == [1]
    assert [t.aborted for t in transports] == [False, True]
    access.stopService()
