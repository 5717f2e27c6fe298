"""Tests for superd.handlers.spawn.wait: wait=yes stream and datagram services."""

from __future__ import annotations

import errno
import socket
from typing import Any, Dict, List, Tuple

import pytest
from zope.interface.verify import verifyObject

from superd.config.model import SocketType
from superd.core.session import Peer
from superd.handlers.spawn.wait import WaitPort, WaitService, wait_service
from superd.net.listener import IListener, Listener, ListenState, ListenStatus
from superd.observe.events import (
    EV_EXIT,
    EV_LISTENING,
    EV_REFUSE,
    EV_RESPAWN_BACKOFF,
    EV_START,
    REASON_EXEC,
)
from tests.fakes import FakeSpawner
from tests.handlers.spawn.helpers import external_service, fake_parts, named


def started(kind: SocketType) -> Tuple[Any, FakeSpawner, WaitService, WaitPort]:
    """A running wait = yes service of ``kind`` (its parts are ``runtime.parts``)."""
    parts, spawner = fake_parts()
    runtime = parts.runtime
    service = external_service(
        name="w", id="w", socket_type=kind, wait=True, port=0,
        protocol="tcp" if kind is SocketType.STREAM else "udp",
        bind=("127.0.0.1",), type=frozenset({"UNLISTED"}),
        server="/usr/sbin/in.tftpd", server_args=("-s", "/srv"))
    svc = wait_service(service, "127.0.0.1", parts.access, parts.processes)
    svc.privilegedStartService()
    svc.startService()
    assert svc.port is not None
    return runtime, spawner, svc, svc.port


def test_stream_child_gets_listening_socket(events: List[Dict[str, Any]]) -> None:
    """A pending connection starts the server with the listening socket on
    0, 1, 2 and REMOTE_HOST <no address>; polling stops until it exits, and
    a healthy run resumes polling at once."""
    runtime, spawner, svc, port = started(SocketType.STREAM)
    assert named(events, EV_LISTENING)[0]["port"] == port.getHost().port
    assert port in runtime.reactor.getReaders()
    client = socket.create_connection(("127.0.0.1", port.getHost().port))
    port.doRead()
    (request,) = spawner.requests
    assert request.fds == {0: port.fileno(), 1: port.fileno(), 2: port.fileno()}
    assert request.env["REMOTE_HOST"] == "<no address>"
    assert "TCPREMOTEIP" not in request.env
    assert port not in runtime.reactor.getReaders()
    assert named(events, EV_START)[0]["xinetd_line"] == "START: w pid=1000 from=<no address>"
    accepted, _ = port.socket.accept()  # the "child" serves the connection
    runtime.reactor.advance(0.2)
    spawner.exit(1000, 0)
    assert named(events, EV_EXIT)[0]["status"] == 0
    assert port in runtime.reactor.getReaders()
    accepted.close()
    client.close()
    svc.stopService()


def test_stream_child_that_serves_nothing_backs_off(events: List[Dict[str, Any]]) -> None:
    """A server exiting at once without accepting is restarted only after
    1 s, then 2 s (logged), not in a tight loop."""
    runtime, spawner, svc, port = started(SocketType.STREAM)
    client = socket.create_connection(("127.0.0.1", port.getHost().port))
    port.doRead()
    spawner.exit(1000, 1)
    (backoff,) = named(events, EV_RESPAWN_BACKOFF)
    assert backoff["delay"] == 1.0
    assert port not in runtime.reactor.getReaders()
    assert port.backoff_until == runtime.reactor.seconds() + 1.0
    runtime.reactor.advance(1.0)
    assert port in runtime.reactor.getReaders()
    assert port.backoff_until is None
    port.doRead()
    spawner.exit(1001, 1)
    assert named(events, EV_RESPAWN_BACKOFF)[1]["delay"] == 2.0
    runtime.reactor.advance(1.9)
    assert port not in runtime.reactor.getReaders()
    runtime.reactor.advance(0.1)
    assert port in runtime.reactor.getReaders()
    client.close()
    svc.stopService()


def udp_client(port: WaitPort, data: bytes, source: str = "127.0.0.1") -> socket.socket:
    client = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    client.bind((source, 0))
    client.sendto(data, ("127.0.0.1", port.getHost().port))
    return client


def test_dgram_first_datagram_stays_queued(monkeypatch: pytest.MonkeyPatch,
                                           events: List[Dict[str, Any]]) -> None:
    """The child gets the bound socket with the first datagram still queued
    and REMOTE_* naming its source; superd stops reading meanwhile."""
    monkeypatch.setattr("superd.access.factory.admit_datagram_source",
                        lambda service, peer, runtime: True)
    runtime, spawner, svc, port = started(SocketType.DGRAM)
    client = udp_client(port, b"RRQ")
    port.doRead()
    (request,) = spawner.requests
    assert request.env["REMOTE_HOST"] == "127.0.0.1"
    assert request.env["REMOTE_PORT"] == str(client.getsockname()[1])
    assert port not in runtime.reactor.getReaders()
    data, _ = port.socket.recvfrom(100, socket.MSG_DONTWAIT)
    assert data == b"RRQ"
    client.close()
    svc.stopService()


def test_dgram_no_queued_datagram_is_discarded(monkeypatch: pytest.MonkeyPatch,
                                               events: List[Dict[str, Any]]) -> None:
    """Datagrams that arrive while the child runs are still queued after it
    exits (xinetd drains them; superd does not), and a child that consumed
    its datagram is a healthy run: no back-off."""
    monkeypatch.setattr("superd.access.factory.admit_datagram_source",
                        lambda service, peer, runtime: True)
    runtime, spawner, svc, port = started(SocketType.DGRAM)
    client = udp_client(port, b"one")
    port.doRead()
    port.socket.recvfrom(100)  # the child serves the first datagram
    client.sendto(b"two", ("127.0.0.1", port.getHost().port))
    client.sendto(b"three", ("127.0.0.1", port.getHost().port))
    spawner.exit(1000, 0)
    assert named(events, EV_RESPAWN_BACKOFF) == []
    assert port in runtime.reactor.getReaders()
    assert port.socket.recvfrom(100, socket.MSG_DONTWAIT)[0] == b"two"
    assert port.socket.recvfrom(100, socket.MSG_DONTWAIT)[0] == b"three"
    client.close()
    svc.stopService()


def test_dgram_refused_source_drops_only_its_datagram(monkeypatch: pytest.MonkeyPatch) -> None:
    """A refused source has exactly its one datagram consumed; the next
    datagram (from an admitted source) starts the server."""
    seen: List[Peer] = []

    def admit(service: Any, peer: Peer, runtime: Any) -> bool:
        seen.append(peer)
        return peer.host != "127.0.0.3"

    monkeypatch.setattr("superd.access.factory.admit_datagram_source", admit)
    runtime, spawner, svc, port = started(SocketType.DGRAM)
    bad = udp_client(port, b"evil", "127.0.0.3")
    good = udp_client(port, b"fine", "127.0.0.2")
    port.doRead()
    assert spawner.requests == [] and port in runtime.reactor.getReaders()
    port.doRead()
    assert spawner.requests[0].env["REMOTE_HOST"] == "127.0.0.2"
    assert [p.host for p in seen] == ["127.0.0.3", "127.0.0.2"]
    assert port.socket.recvfrom(100, socket.MSG_DONTWAIT)[0] == b"fine"
    bad.close()
    good.close()
    svc.stopService()


def test_dgram_exit_without_reading_backs_off(monkeypatch: pytest.MonkeyPatch,
                                              events: List[Dict[str, Any]]) -> None:
    """A datagram server that exits at once leaving its datagram queued is
    restarted after a back-off; the datagram is still there for the next."""
    monkeypatch.setattr("superd.access.factory.admit_datagram_source",
                        lambda service, peer, runtime: True)
    runtime, spawner, svc, port = started(SocketType.DGRAM)
    client = udp_client(port, b"RRQ")
    port.doRead()
    spawner.exit(1000, 1)
    assert named(events, EV_RESPAWN_BACKOFF)[0]["delay"] == 1.0
    runtime.reactor.advance(1.0)
    port.doRead()
    assert len(spawner.requests) == 2
    client.close()
    svc.stopService()


def test_spawn_failure_logs_and_backs_off(monkeypatch: pytest.MonkeyPatch,
                                          events: List[Dict[str, Any]]) -> None:
    """A server that cannot be executed: FAIL exec, then a back-off instead
    of retrying on every poll."""
    monkeypatch.setattr("superd.access.factory.admit_datagram_source",
                        lambda service, peer, runtime: True)
    runtime, spawner, svc, port = started(SocketType.DGRAM)
    spawner.fail_next(REASON_EXEC, errno.ENOENT)
    client = udp_client(port, b"x")
    port.doRead()
    assert named(events, EV_REFUSE)[0]["reason"] == REASON_EXEC
    assert named(events, EV_RESPAWN_BACKOFF)[0]["delay"] == 1.0
    assert port not in runtime.reactor.getReaders()
    client.close()
    svc.stopService()


def test_stop_closes_socket_and_cancels_backoff() -> None:
    """Stopping the service stops polling, cancels a pending back-off and
    closes superd's copy of the socket."""
    runtime, spawner, svc, port = started(SocketType.STREAM)
    client = socket.create_connection(("127.0.0.1", port.getHost().port))
    port.doRead()
    spawner.exit(1000, 1)
    assert runtime.reactor.getDelayedCalls()
    svc.stopService()
    assert runtime.reactor.getDelayedCalls() == []
    assert port.fileno() == -1 and port not in runtime.reactor.getReaders()
    client.close()


def test_unknown_bind_host_is_refused() -> None:
    """Asking for an address the service does not listen on is a bug."""
    parts, _ = fake_parts()
    service = external_service(wait=True, port=0, bind=("127.0.0.1",))
    with pytest.raises(ValueError):
        wait_service(service, "::1", parts.access, parts.processes)


def test_stream_clean_exit_is_believed(events: List[Dict[str, Any]]) -> None:
    """A quick wait=yes stream server that exits 0 while a new connection is
    already queued (it arrived after the one served) is not backed off."""
    runtime, spawner, svc, port = started(SocketType.STREAM)
    first = socket.create_connection(("127.0.0.1", port.getHost().port))
    port.doRead()
    accepted, _ = port.socket.accept()
    second = socket.create_connection(("127.0.0.1", port.getHost().port))
    spawner.exit(1000, 0)
    assert named(events, EV_RESPAWN_BACKOFF) == []
    assert port in runtime.reactor.getReaders()
    for sock in (first, second, accepted):
        sock.close()
    svc.stopService()


def test_adopt_keeps_socket_and_child() -> None:
    """On reload the new service takes the port with its settings: the
    running child is left alone, and the next child is started with the
    new argv; the old service no longer holds the socket."""
    runtime, spawner, svc, port = started(SocketType.STREAM)
    client = socket.create_connection(("127.0.0.1", port.getHost().port))
    port.doRead()
    new_service = external_service(
        name="w", id="w", socket_type=SocketType.STREAM, wait=True, port=0,
        bind=("127.0.0.1",), type=frozenset({"UNLISTED"}),
        server="/usr/sbin/in.tftpd", server_args=("-s", "/elsewhere"))
    new = wait_service(new_service, "127.0.0.1", svc._access, svc._processes)
    new.adopt(svc)
    assert new.port is port and svc.port is None
    assert new.bound_port() == port.getHost().port and svc.bound_port() is None
    assert spawner.running() == [1000] and port.child is not None
    svc.stopService()  # the old service closes nothing any more
    assert port.fileno() != -1
    port.socket.accept()[0].close()
    spawner.exit(1000, 0)
    port.doRead()
    assert spawner.requests[1].argv == ("in.tftpd", "-s", "/elsewhere")
    client.close()
    new.stopService()


def test_is_a_listener_that_reports_its_state() -> None:
    """IListener: listening, suspended while a server runs, backing off
    after one that served nothing, closed once stopped."""
    runtime, spawner, svc, port = started(SocketType.STREAM)
    assert verifyObject(IListener, svc)
    assert svc.status() == ListenStatus(ListenState.LISTENING)
    assert svc.listening_socket() is port.socket
    client = socket.create_connection(("127.0.0.1", port.getHost().port))
    port.doRead()
    assert svc.status() == ListenStatus(ListenState.SUSPENDED, server_pid=1000)
    spawner.exit(1000, 1)
    assert svc.status() == ListenStatus(ListenState.BACKING_OFF,
                                        until=runtime.reactor.seconds() + 1.0)
    svc.close()
    assert svc.status() == ListenStatus(ListenState.CLOSED)
    assert svc.listening_socket() is None and port.fileno() == -1
    client.close()


def test_adopts_only_from_its_own_kind() -> None:
    """A wait = yes socket cannot come from a Listener (nor go to one)."""
    _, _, svc, port = started(SocketType.DGRAM)
    other = Listener(svc.address, lambda address: port)
    with pytest.raises(TypeError):
        svc.adopt(other)
    with pytest.raises(TypeError):
        other.adopt(svc)
    svc.stopService()
