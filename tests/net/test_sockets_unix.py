"""
Tests for superd.net.sockets and superd.net.listener with UNIX sockets: the
listen address of a ``bind = unix:PATH`` service, bind failures a person
can act on, the listening event, and a reload that keeps the socket file.
"""

from __future__ import annotations

import os
import socket
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import attrs
import pytest
from twisted.internet.protocol import Factory
from twisted.internet.testing import MemoryReactorClock

from superd.config.model import Location, UnixSocket
from superd.net import unixsocket
from superd.net.listener import Listener
from superd.net.sockets import BindError, bind_socket, listen_addresses, listen_stream
from superd.net.unixport import TakingUnixPort, adopt_unix
from tests.builders import local_echo_service


@pytest.fixture(autouse=True)
def forget() -> Iterator[None]:
    yield
    unixsocket.reset()


def _service(path: Path, mode: int = 0o600) -> Any:
    return local_echo_service(unix=UnixSocket(str(path), mode), protocol="unix", port=None,
                              bind=(), lines={"bind": Location("conf/echo", 4)})


def test_a_unix_service_listens_on_its_path(tmp_path: Path) -> None:
    """One address: the path as host, port 0, family AF_UNIX, described as
    ``unix PATH``, located at the bind line."""
    (address,) = listen_addresses(_service(tmp_path / "e.sock"), backlog=9)
    assert (address.host, address.port, address.backlog) == (str(tmp_path / "e.sock"), 0, 9)
    assert address.family == socket.AF_UNIX and address.protocol == "unix"
    assert address.describe() == f"unix {tmp_path / 'e.sock'}"
    assert address.location == Location("conf/echo", 4)


def test_bind_failures_name_the_line_the_service_and_the_file(tmp_path: Path) -> None:
    """A regular file at the path: BindError naming the configuration line,
    the service, the socket and what is in the way; the file is untouched."""
    path = tmp_path / "e.sock"
    path.write_text("keep me\n")
    (address,) = listen_addresses(_service(path))
    with pytest.raises(BindError) as caught:
        bind_socket(address)
    assert str(caught.value) == (
        f"conf/echo:4: service echo: cannot listen on unix {path}: {path} exists and is a"
        " regular file, not a socket; superd replaces only a stale socket file")
    assert path.read_text() == "keep me\n"


def test_listen_stream_serves_the_bound_socket(tmp_path: Path) -> None:
    """listen_stream binds the file and serves it with a TakingUnixPort
    (any reactor: Twisted's fakes cannot adopt a UNIX socket)."""
    reactor = MemoryReactorClock()
    (address,) = listen_addresses(_service(tmp_path / "e.sock"))
    port = listen_stream(reactor, address, Factory())
    assert isinstance(port, TakingUnixPort) and reactor.getReaders() == [port]
    assert stat.S_ISSOCK(os.lstat(tmp_path / "e.sock").st_mode)
    port.stopListening()
    reactor.advance(0)  # the port closes on the next turn
    assert not (tmp_path / "e.sock").exists()


def test_a_reload_keeps_the_file_and_gives_it_the_new_mode(tmp_path: Path) -> None:
    """Listener.adopt moves the port: same socket file (same inode), the new
    socket_mode applied, the old listener closed without removing it; the
    file goes when the new listener closes."""
    path = tmp_path / "e.sock"
    reactor = MemoryReactorClock()

    def open_port(address: Any) -> Any:
        sock = bind_socket(address)
        try:
            return adopt_unix(reactor, sock.fileno(), Factory(), mode=0o600, backlog=5)
        finally:
            sock.close()

    (old_address,) = listen_addresses(_service(path, 0o600))
    old = Listener(old_address, open_port, Factory())
    old.privilegedStartService()
    inode = path.lstat().st_ino
    (new_address,) = listen_addresses(_service(path, 0o660))
    new = Listener(new_address, open_port, Factory())
    new.adopt(old)
    assert old.port is None and new.port is not None
    assert new.address == new_address
    assert path.lstat().st_ino == inode and stat.S_IMODE(path.stat().st_mode) == 0o660
    old.close()
    reactor.advance(0)
    assert path.exists()
    new.close()
    reactor.advance(0)  # the port closes on the next turn
    assert not path.exists()


def test_emit_listening_for_a_unix_socket(tmp_path: Path,
                                          log_events: list[dict[str, Any]]) -> None:
    """The listening event of a UNIX socket: protocol unix, host its path, port 0."""
    reactor = MemoryReactorClock()
    (address,) = listen_addresses(_service(tmp_path / "e.sock"))
    listener = Listener(address, lambda a: listen_stream(reactor, a, Factory()), Factory())
    listener.privilegedStartService()
    (event,) = [e for e in log_events if e.get("event") == "listening"]
    assert (event["protocol"], event["host"], event["port"]) == (
        "unix", str(tmp_path / "e.sock"), 0)
    assert listener.bound_port() == 0
    assert attrs.evolve(address).describe(0) == f"unix {tmp_path / 'e.sock'}"
