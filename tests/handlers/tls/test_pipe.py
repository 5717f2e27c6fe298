"""
Unit tests of ``superd.handlers.tls.pipe`` with the fake spawner: the child is
started only when the bridge is connected (after the handshake), on one end
of a socket pair as fds 0-2, with the peer and TLS facts in its
environment; START/EXIT carry its pid; a failed spawn is logged and closes
the client; the session ends when the child exits.
"""

from __future__ import annotations

import errno
import os
import socket
from typing import Any

from twisted.internet.testing import StringTransport
from twisted.python.failure import Failure

from superd.core.session import Peer, Session
from superd.handlers.tls.pipe import ChildBridge, PipeHandler
from tests.handlers.spawn.helpers import external_service, fake_parts


class FakeTLS(StringTransport):
    """A string transport standing in for the TLS layer (no handshake facts)."""

    write_closed = False

    def loseWriteConnection(self) -> None:
        self.write_closed = True


def start() -> tuple[Any, Any, Session, ChildBridge, FakeTLS]:
    parts, spawner = fake_parts()
    runtime = parts.runtime
    handler = PipeHandler(external_service(server="/bin/cat", server_args=()), runtime,
                          parts.processes)
    session = Session("ssh", Peer("10.0.0.5", 4242), Peer("127.0.0.1", 992), 0.0)
    bridge = handler.protocol_for(session)
    transport = FakeTLS()
    return runtime, spawner, session, bridge, transport


def events_named(events: list[dict[str, Any]], name: str) -> list[dict[str, Any]]:
    return [e for e in events if e.get("event") == name]


def test_child_on_a_socket_pair(log_events: list[dict[str, Any]]) -> None:
    """Connecting spawns one child whose fds 0-2 are a socket; superd adopts the other end."""
    runtime, spawner, session, bridge, transport = start()
    assert spawner.requests == []
    before = len(os.listdir("/proc/self/fd"))
    bridge.makeConnection(transport)
    assert len(os.listdir("/proc/self/fd")) == before  # both ends closed after use
    [request] = spawner.requests
    fd = request.fds[0]
    assert request.fds == {0: fd, 1: fd, 2: fd}
    assert request.env["REMOTE_ADDR"] == "10.0.0.5"
    [(adopted, family, _)] = runtime.reactor.adoptedStreamConnections
    assert family == socket.AF_UNIX
    assert session.pid == spawner.running()[0]
    [start_event] = events_named(log_events, "start")
    assert start_event["pid"] == session.pid
    assert adopted != fd


def test_child_exit_ends_session(log_events: list[dict[str, Any]]) -> None:
    """The child's exit logs EXIT with its pid and status and ends the session."""
    runtime, spawner, session, bridge, transport = start()
    bridge.makeConnection(transport)
    spawner.exit(session.pid, 3)
    runtime.reactor.advance(0)
    [exit_event] = events_named(log_events, "exit")
    assert (exit_event["pid"], exit_event["status"]) == (session.pid, 3)
    assert session.ended


def test_spawn_failure_closes_client(log_events: list[dict[str, Any]]) -> None:
    """A child that cannot start: FAIL exec, the client closed, the session ended."""
    runtime, spawner, session, bridge, transport = start()
    spawner.fail_next("exec", errno.ENOENT)
    bridge.makeConnection(transport)
    assert transport.disconnecting
    assert [e["reason"] for e in events_named(log_events, "refuse")] == ["exec"]
    bridge.connectionLost(Failure(Exception("closed")))
    assert session.ended and runtime.reactor.adoptedStreamConnections == []


def test_ending_the_session_cuts_the_client_and_stops_the_child(
        log_events: list[dict[str, Any]]) -> None:
    """A TLS session served by a child that superd ends: the client's
    connection is aborted, the child's group gets SIGTERM, and its EXIT
    carries the reason."""
    import signal

    runtime, spawner, session, bridge, transport = start()
    bridge.makeConnection(transport)
    pid = session.pid
    assert session.terminate("reconfigured")
    assert transport.disconnecting
    assert (pid, signal.SIGTERM) in spawner.signals
    runtime.reactor.advance(0)
    [exit_event] = events_named(log_events, "exit")
    assert (exit_event["reason"], exit_event["signal"]) == ("reconfigured", signal.SIGTERM)
    assert session.ended


def test_abandoned_child_is_stopped_after_grace(log_events: list[dict[str, Any]]) -> None:
    """The client leaves, the child neither reads nor exits: the session stays
    live until --grace has passed, then superd closes its end of the pair and
    stops the child; the session ends when it is reaped."""
    runtime, spawner, session, bridge, transport = start()
    spawner.ignore_term.add(1000)
    bridge.makeConnection(transport)
    pid = session.pid
    bridge.connectionLost(Failure(Exception("client reset")))
    assert not session.ended
    runtime.reactor.advance(4.9)
    assert spawner.signals == [] and not session.ended
    runtime.reactor.advance(0.1)
    [abandoned] = events_named(log_events, "child_abandoned")
    assert abandoned["pid"] == pid
    assert spawner.signals[:1] == [(pid, 15)]
    assert not session.ended  # it ignores SIGTERM ...
    runtime.reactor.advance(5.0)
    assert (pid, 9) in spawner.signals and session.ended  # ... not SIGKILL


def test_child_that_exits_after_client_left_is_left_alone(
        log_events: list[dict[str, Any]]) -> None:
    """A child that takes its EOF and exits within --grace is never signalled."""
    runtime, spawner, session, bridge, transport = start()
    bridge.makeConnection(transport)
    bridge.connectionLost(Failure(Exception("client closed")))
    runtime.reactor.advance(1.0)
    spawner.exit(session.pid, 0)
    runtime.reactor.advance(10.0)
    assert spawner.signals == [] and session.ended
    assert events_named(log_events, "child_abandoned") == []
