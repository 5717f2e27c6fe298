"""
Tests for superd.net.unixport: the UNIX listening port whose factory sees
each peer's credentials, takes bare descriptors, and leaves the socket
file to superd.net.unixsocket.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from twisted.internet import unix
from twisted.internet.error import ConnectionDone
from twisted.internet.protocol import Factory, Protocol
from twisted.internet.testing import MemoryReactorClock
from twisted.python.failure import Failure

from superd.config.model import UnixSocket
from superd.core.session import Peer, UnixPeer
from superd.net import unixsocket
from superd.net.takingport import TAKEN
from superd.net.unixport import TakingUnixPort, adopt_unix, peer_credentials
from superd.net.unixsocket import bind_unix


@pytest.fixture(autouse=True)
def forget() -> Iterator[None]:
    yield
    unixsocket.reset()


class Recorder(Protocol):
    def __init__(self) -> None:
        self.received = b""

    def dataReceived(self, data: bytes) -> None:
        self.received += data


class Seeing(Factory):
    """Records what the port gives it; takes, refuses or serves as asked."""

    def __init__(self, answer: str = "take") -> None:
        self.answer = answer
        self.taken: list[tuple[int, Any, Any]] = []
        self.built: list[Any] = []

    def take_connection(self, fd: int, address: Any, local: Any) -> Any:
        self.taken.append((fd, address, local))
        if self.answer == "take":
            os.write(fd, b"taken\n")
            return TAKEN
        if self.answer == "refuse":
            return None
        return self.buildProtocol(address)

    def buildProtocol(self, addr: Any) -> Protocol:
        self.built.append(addr)
        return Recorder()


class Building(Seeing):
    """A factory without take_connection: every connection gets a transport."""

    take_connection = None  # type: ignore[assignment]


def _port(path: Path, factory: Any) -> TakingUnixPort:
    sock = bind_unix(UnixSocket(str(path), 0o600), 5)
    try:
        return adopt_unix(MemoryReactorClock(), sock.fileno(), factory, mode=0o600, backlog=5)
    finally:
        sock.close()


def _connect(port: TakingUnixPort, path: Path) -> socket.socket:
    client = socket.socket(socket.AF_UNIX)
    client.settimeout(10)
    client.connect(str(path))
    port.doRead()
    return client


def _close(port: TakingUnixPort) -> None:
    port.connectionLost(Failure(ConnectionDone()))


def _me(path: Path) -> UnixPeer:
    return UnixPeer.of(os.geteuid(), os.getegid(), os.getpid(),
                       tuple(sorted(os.getgroups())), str(path))


def test_peer_credentials_are_the_connecting_process() -> None:
    """SO_PEERCRED and SO_PEERGROUPS: our own pid, uid, gid and groups."""
    ours, theirs = socket.socketpair()
    with ours, theirs:
        peer = peer_credentials(ours, "/run/x.sock")
    assert peer == UnixPeer.of(os.geteuid(), os.getegid(), os.getpid(),
                               tuple(sorted(os.getgroups())), "/run/x.sock")
    assert peer.host == f"uid:{os.geteuid()}" and peer.port == 0


def test_unreadable_credentials_match_no_list() -> None:
    """A socket that has no peer credentials gives uid and gid -1."""
    with socket.socket(socket.AF_INET) as unconnected:
        peer = peer_credentials(unconnected, "/run/x.sock")
    assert (peer.uid, peer.gid, peer.host) == (-1, -1, "uid:-1")


def test_taken_connection_carries_credentials(tmp_path: Path) -> None:
    """take_connection gets the bare descriptor, the peer as a UnixPeer and
    the socket's path as the local Peer; what it writes reaches the client,
    and the port closes the descriptor."""
    path = tmp_path / "s.sock"
    factory = Seeing("take")
    port = _port(path, factory)
    with _connect(port, path) as client:
        assert client.recv(100) == b"taken\n"
        assert client.recv(1) == b""
    ((fd, peer, local),) = factory.taken
    assert peer == _me(path)
    assert local == Peer(str(path), 0)
    with pytest.raises(OSError):
        os.fstat(fd)
    _close(port)


def test_refused_connection_is_closed(tmp_path: Path) -> None:
    """None from take_connection: the client sees the connection closed."""
    path = tmp_path / "s.sock"
    port = _port(path, Seeing("refuse"))
    with _connect(port, path) as client:
        assert client.recv(1) == b""
    _close(port)


@pytest.mark.parametrize("kind", [Seeing, Building])
def test_a_protocol_gets_a_unix_transport(tmp_path: Path, kind: type[Seeing]) -> None:
    """A protocol from take_connection, or buildProtocol(peer) for a factory
    without take_connection, is served on a unix.Server transport."""
    path = tmp_path / "s.sock"
    factory = kind("serve")
    port = _port(path, factory)
    with _connect(port, path) as client:
        client.sendall(b"hello")
        (addr,) = factory.built
        assert addr == _me(path)
        readers = port.reactor.getReaders()  # type: ignore[attr-defined]
        (transport,) = [r for r in readers if r is not port]
        assert isinstance(transport, unix.Server)
        transport.doRead()
        assert transport.protocol.received == b"hello"
        transport.connectionLost(Failure(ConnectionDone()))
    _close(port)


def test_closing_removes_superd_s_file(tmp_path: Path) -> None:
    """The port's close removes the socket file superd made."""
    path = tmp_path / "s.sock"
    port = _port(path, Seeing())
    assert path.exists()
    _close(port)
    assert not path.exists()


def test_an_adopted_socket_keeps_its_file_mode_and_listening(tmp_path: Path) -> None:
    """A socket superd did not make (systemd's): adopting it keeps the file's
    mode and backlog; closing the port neither removes the file nor shuts
    the socket down, so the copy systemd holds still accepts connections."""
    path = tmp_path / "passed.sock"
    passed = socket.socket(socket.AF_UNIX)
    passed.bind(str(path))
    passed.listen(5)
    os.chmod(path, 0o640)
    with passed:
        port = adopt_unix(MemoryReactorClock(), passed.fileno(), Seeing(), mode=0o640,
                          backlog=5)
        _close(port)
        assert path.exists() and (path.stat().st_mode & 0o777) == 0o640
        with socket.socket(socket.AF_UNIX) as client:
            client.connect(str(path))
            accepted, _ = passed.accept()
            accepted.close()
