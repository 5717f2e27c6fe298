"""
superd.net.activation: which passed socket serves which service address, and
that the environment is read once and cleaned.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator

import pytest
from twisted.logger import capturedLogs

from superd.config.model import Location, SocketType
from superd.net import activation
from superd.net.activation import Inherited, find, parse_environment
from superd.net.address import ListenAddress
from superd.net.sockets import bind_socket

HERE = Location("test", 1)


def address(service_id: str, host: str = "127.0.0.1", port: int = 7,
            kind: SocketType = SocketType.STREAM) -> ListenAddress:
    return ListenAddress(service_id=service_id, name="echo", host=host, port=port,
                         socket_type=kind, location=HERE)


def passed(name: str, host: str = "127.0.0.1", port: int = 7,
           kind: int = socket.SOCK_STREAM, fd: int = 3) -> Inherited:
    return Inherited(fd, name, socket.AF_INET, kind, host, port)


@pytest.fixture(autouse=True)
def forget() -> Iterator[None]:
    activation.reset()
    yield
    activation.reset()


def test_parse_environment_for_us_removes_every_variable() -> None:
    """LISTEN_* for our pid give (fd, name) from 3 on, and all three variables go."""
    env = {"LISTEN_PID": "42", "LISTEN_FDS": "2", "LISTEN_FDNAMES": "a:b", "X": "1"}
    assert parse_environment(env, 42) == ((3, "a"), (4, "b"))
    assert env == {"X": "1"}


def test_parse_environment_for_another_pid_gives_nothing_but_cleans() -> None:
    """Variables meant for a parent (another pid) are not ours, and children must not see them."""
    env = {"LISTEN_PID": "41", "LISTEN_FDS": "1", "LISTEN_FDNAMES": "a"}
    assert parse_environment(env, 42) == ()
    assert env == {}


@pytest.mark.parametrize("fds,names,expected", [
    ("2", None, ((3, "unknown"), (4, "unknown"))),   # systemd < 227: no names
    ("2", "a", ((3, "unknown"), (4, "unknown"))),    # names disagree: not trusted
    ("1", "", ((3, "unknown"),)),
    ("x", "a", ()),
    ("0", "", ()),
    ("99999", "", ()),                               # bounded
])
def test_parse_environment_odd_values(fds: str, names: str | None,
                                      expected: tuple[tuple[int, str], ...]) -> None:
    """Missing or mismatched names still pass the sockets; nonsense counts pass none."""
    env = {"LISTEN_PID": "7", "LISTEN_FDS": fds}
    if names is not None:
        env["LISTEN_FDNAMES"] = names
    assert parse_environment(env, 7) == expected


def test_named_socket_serves_its_service_wherever_it_listens() -> None:
    """A socket named after the service id serves it even on another port."""
    sock = passed("echo-tcp", port=9007)
    assert find(address("echo-tcp", port=0), 1, [sock]) == sock
    assert find(address("other"), 1, [sock]) is None


def test_named_socket_must_have_the_service_socket_type() -> None:
    """A datagram socket never serves a stream address of the same name."""
    sock = passed("echo", kind=socket.SOCK_DGRAM)
    assert find(address("echo"), 1, [sock]) is None
    assert find(address("echo", kind=SocketType.DGRAM), 1, [sock]) == sock


def test_several_named_sockets_are_matched_by_host() -> None:
    """With one socket per bind address, each address gets the one on its host."""
    one, two = passed("echo", "127.0.0.1", fd=3), passed("echo", "127.0.0.2", fd=4)
    assert find(address("echo", "127.0.0.2"), 2, [one, two]) == two
    assert find(address("echo", "127.0.0.3"), 2, [one, two]) is None


def test_unnamed_socket_serves_the_address_equal_to_its_own() -> None:
    """A socket with the unit's name serves the address with its host and port only."""
    sock = passed("superd.socket", "127.0.0.1", 7)
    assert find(address("echo", "127.0.0.1", 7), 1, [sock]) == sock
    assert find(address("echo", "127.0.0.1", 8), 1, [sock]) is None
    assert find(address("echo", "127.0.0.1", 0), 1, [sock]) is None


def _at(fd: int, sock: socket.socket) -> int:
    os.dup2(sock.fileno(), fd)
    return fd


def test_capture_then_bind_socket_adopts_instead_of_binding() -> None:
    """With a passed socket, bind_socket returns a duplicate of it (same port,
    nothing new bound), twice for a reload, and the environment is cleaned."""
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    fd = _at(900, listener)
    try:
        env = {"LISTEN_PID": "5", "LISTEN_FDS": "1", "LISTEN_FDNAMES": "echo-tcp"}
        found = activation.capture(env, 5, start=900)
        assert [(i.fd, i.name, i.port) for i in found] == [(900, "echo-tcp", port)]
        assert env == {}
        assert not os.get_inheritable(900)
        for _ in range(2):
            adopted = bind_socket(address("echo-tcp", port=0))
            assert adopted.getsockname()[1] == port
            assert adopted.fileno() != fd
            adopted.close()
        with socket.create_connection(("127.0.0.1", port), 2):
            pass  # still listening: the passed socket was never closed
    finally:
        os.close(fd)
        listener.close()


def test_capture_is_once_per_process() -> None:
    """A second capture does not read the environment again."""
    assert activation.capture({}, 1) == ()
    env = {"LISTEN_PID": "1", "LISTEN_FDS": "1"}
    assert activation.capture(env, 1) == ()
    assert "LISTEN_FDS" in env


def test_no_capture_means_binding() -> None:
    """Without passed sockets bind_socket binds a fresh socket as before."""
    sock = bind_socket(address("echo", port=0))
    try:
        assert sock.getsockname()[1] != 0
    finally:
        sock.close()


def test_unclaimed_sockets_are_reported() -> None:
    """A passed socket no service adopted is logged once asked (clients would hang)."""
    used, spare = socket.create_server(("127.0.0.1", 0)), socket.create_server(("127.0.0.1", 0))
    fds = (_at(910, used), _at(911, spare))
    try:
        activation.capture({"LISTEN_PID": "5", "LISTEN_FDS": "2",
                            "LISTEN_FDNAMES": "echo-tcp:nothing"}, 5, start=910)
        bind_socket(address("echo-tcp", port=0)).close()
        assert [i.name for i in activation.unclaimed()] == ["nothing"]
        with capturedLogs() as events:
            assert activation.warn_unclaimed() == 1
        assert events[0]["name"] == "nothing" and events[0]["unclaimed"]
    finally:
        for fd in fds:
            os.close(fd)
        used.close()
        spare.close()
