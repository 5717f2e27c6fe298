"""
superd.net.activation with UNIX sockets: a passed AF_UNIX socket serves a
``bind = unix:PATH`` service by name or by path, never an IP service, and
its file stays systemd's.
"""

from __future__ import annotations

import os
import socket
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from superd.config.model import Location, SocketType, UnixSocket
from superd.net import activation, unixsocket
from superd.net.activation import Inherited, find
from superd.net.address import ListenAddress
from superd.net.sockets import bind_socket

HERE = Location("test", 1)


def unix_address(service_id: str, path: str) -> ListenAddress:
    return ListenAddress(service_id=service_id, name="echo", host=path, port=0,
                         socket_type=SocketType.STREAM, location=HERE,
                         unix=UnixSocket(path, 0o600))


def ip_address(service_id: str) -> ListenAddress:
    return ListenAddress(service_id=service_id, name="echo", host="127.0.0.1", port=7,
                         socket_type=SocketType.STREAM, location=HERE)


def passed_unix(name: str, path: str, fd: int = 3) -> Inherited:
    return Inherited(fd, name, socket.AF_UNIX, socket.SOCK_STREAM, path, 0)


@pytest.fixture(autouse=True)
def forget() -> Iterator[None]:
    activation.reset()
    yield
    activation.reset()
    unixsocket.reset()


def test_unix_socket_serves_by_name_or_by_path() -> None:
    """Named after the service id: serves it wherever it is; any other name:
    serves the service whose path is its own."""
    named = passed_unix("app", "/run/elsewhere.sock")
    assert find(unix_address("app", "/run/app.sock"), 1, [named]) == named
    unit = passed_unix("superd.socket", "/run/app.sock")
    assert find(unix_address("app", "/run/app.sock"), 1, [unit]) == unit
    assert find(unix_address("app", "/run/other.sock"), 1, [unit]) is None


def test_families_never_cross() -> None:
    """A UNIX service takes no IP socket and an IP service no UNIX socket,
    even one named after it."""
    ip = Inherited(3, "app", socket.AF_INET, socket.SOCK_STREAM, "127.0.0.1", 7)
    assert find(unix_address("app", "/run/app.sock"), 1, [ip]) is None
    assert find(ip_address("app"), 1, [passed_unix("app", "/run/app.sock")]) is None


def _at(fd: int, sock: socket.socket) -> int:
    os.dup2(sock.fileno(), fd)
    return fd


def test_a_passed_unix_socket_is_adopted_and_its_file_left_alone(tmp_path: Path) -> None:
    """capture describes a passed UNIX socket by its path; bind_socket adopts
    it instead of making a file; superd never made it, so it keeps its mode
    and is never removed."""
    path = str(tmp_path / "app.sock")
    listener = socket.socket(socket.AF_UNIX)
    listener.bind(path)
    listener.listen(5)
    os.chmod(path, 0o640)
    fd = _at(920, listener)
    try:
        found = activation.capture({"LISTEN_PID": "5", "LISTEN_FDS": "1",
                                    "LISTEN_FDNAMES": "superd.socket"}, 5, start=920)
        assert [(i.family, i.host, i.port) for i in found] == [(socket.AF_UNIX, path, 0)]
        adopted = bind_socket(unix_address("app", path))
        assert adopted.getsockname() == path and adopted.fileno() != fd
        adopted.close()
        assert not unixsocket.made(path)
        unixsocket.release(path)
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o640
    finally:
        os.close(fd)
        listener.close()


def test_an_unnamed_unix_socket_is_ignored() -> None:
    """A socketpair end (no path) is not a listening socket superd can serve."""
    one, other = socket.socketpair()
    fd = _at(921, one)
    try:
        assert activation.capture({"LISTEN_PID": "5", "LISTEN_FDS": "1"}, 5,
                                  start=921) == ()
    finally:
        os.close(fd)
        one.close()
        other.close()
