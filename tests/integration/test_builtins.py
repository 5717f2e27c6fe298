"""
The five builtins served by the real daemon over TCP and UDP, on 127.0.0.1
and ::1, byte for byte; and a thousand misbehaving clients that must neither
crash superd nor leak a descriptor.
"""

from __future__ import annotations

import datetime
import os
import re
import socket
import struct
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.conftest import _crash_report
from tests.integration.harness import Superd, start_superd

HOSTS = ["127.0.0.1", "::1"]
NAMES = ["echo", "discard", "daytime", "time", "chargen"]
RFC868_OFFSET = 2208988800
DAYTIME = re.compile(rb"^(\d{2} [A-Z]{3} \d{4} \d{2}:\d{2}:\d{2}) (\S+)\r\n$")
RING = bytes(range(0x20, 0x7F))  # RFC 864: the 95 printable characters


def builtin_file(name: str) -> str:
    """A stream and a dgram block for builtin ``name`` on both loopbacks, port 0."""
    blocks = []
    for kind, wait in (("stream", "no"), ("dgram", "yes")):
        blocks.append(
            f"service {name}\n{{\n"
            f"\tid          = {name}-{kind}\n"
            f"\ttype        = INTERNAL UNLISTED\n"
            f"\tsocket_type = {kind}\n"
            f"\twait        = {wait}\n"
            f"\tport        = 0\n"
            f"\tbind        = 127.0.0.1 ::1\n"
            # No connection-rate limit: the tests below open ~100 connections a second.
            f"\tcps         = 0 0\n"
            f"}}\n")
    return "\n".join(blocks)


def serving_builtins(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Superd]:
    """A daemon serving all five builtins, stopped (and checked) afterwards."""
    conf = tmp_path_factory.mktemp("builtins-conf")
    for name in NAMES:
        (conf / name).write_text(builtin_file(name))
    state = tmp_path_factory.mktemp("builtins-state")
    daemon = start_superd(str(conf), state_dir=str(state))
    yield daemon
    problem = _crash_report(daemon)
    daemon.stop()
    if problem:
        pytest.fail(problem)


@pytest.fixture(scope="module")
def superd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Superd]:
    """One daemon serving all five builtins for the whole module."""
    yield from serving_builtins(tmp_path_factory)


@pytest.fixture
def idle_superd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Superd]:
    """A daemon of its own, for a test that counts descriptors from idle:
    no connection of another test can be closing meanwhile."""
    yield from serving_builtins(tmp_path_factory)


def family(host: str) -> socket.AddressFamily:
    return socket.AF_INET6 if ":" in host else socket.AF_INET


def connect(superd: Superd, name: str, host: str, timeout: float = 5) -> socket.socket:
    port = superd.port(f"{name}-stream", "tcp", host)
    return socket.create_connection((host, port), timeout=timeout)


def ask_udp(superd: Superd, name: str, host: str, payload: bytes,
            timeout: float = 3) -> bytes:
    port = superd.port(f"{name}-dgram", "udp", host)
    with socket.socket(family(host), socket.SOCK_DGRAM) as sock:
        sock.settimeout(timeout)
        sock.sendto(payload, (host, port))
        return sock.recv(65535)


def read_all(sock: socket.socket, limit: int = 1 << 20) -> bytes:
    chunks = []
    while sum(map(len, chunks)) < limit:
        chunk = sock.recv(65536)
        if not chunk:
            break
        chunks.append(chunk)
    return b"".join(chunks)


def read_exactly(sock: socket.socket, size: int) -> bytes:
    data = b""
    while len(data) < size:
        chunk = sock.recv(size - len(data))
        assert chunk, f"EOF after {len(data)} of {size} bytes"
        data += chunk
    return data


def assert_daytime(reply: bytes) -> None:
    match = DAYTIME.match(reply)
    assert match, reply
    stamp = datetime.datetime.strptime(match.group(1).decode(), "%d %b %Y %H:%M:%S")
    assert match.group(1).split()[1].isupper()  # xinetd's upper-case month
    assert abs((stamp - datetime.datetime.now()).total_seconds()) <= 2


def assert_time(reply: bytes) -> None:
    assert len(reply) == 4
    (value,) = struct.unpack("!I", reply)
    assert abs(value - RFC868_OFFSET - time.time()) <= 2


def assert_chargen_lines(data: bytes) -> None:
    """Every line is 72 ring characters plus CRLF, each starting one further on."""
    lines = data.split(b"\r\n")
    assert lines[-1] == b""
    start = RING.index(lines[0][:1])
    for i, line in enumerate(lines[:-1]):
        offset = (start + i) % len(RING)
        expected = (RING[offset:] + RING)[:72]
        assert line == expected, (i, line)


@pytest.mark.parametrize("host", HOSTS)
def test_echo_tcp(superd: Superd, host: str) -> None:
    """echo/tcp returns every byte sent, in order, and closes after the client does."""
    payload = os.urandom(200_000)
    with connect(superd, "echo", host) as sock:
        sock.sendall(payload)
        sock.shutdown(socket.SHUT_WR)
        assert read_all(sock) == payload


@pytest.mark.parametrize("host", HOSTS)
def test_echo_udp(superd: Superd, host: str) -> None:
    """echo/udp replies with the datagram it got."""
    assert ask_udp(superd, "echo", host, b"ping \x00\xff") == b"ping \x00\xff"


@pytest.mark.parametrize("host", HOSTS)
def test_discard_tcp(superd: Superd, host: str) -> None:
    """discard/tcp reads everything, sends nothing, and closes at the client's EOF."""
    with connect(superd, "discard", host) as sock:
        sock.sendall(b"x" * 300_000)
        sock.shutdown(socket.SHUT_WR)
        assert read_all(sock) == b""


@pytest.mark.parametrize("host", HOSTS)
def test_discard_udp(superd: Superd, host: str) -> None:
    """discard/udp never replies."""
    with pytest.raises(socket.timeout):
        ask_udp(superd, "discard", host, b"anything", timeout=0.5)


@pytest.mark.parametrize("host", HOSTS)
def test_daytime_tcp(superd: Superd, host: str) -> None:
    """daytime/tcp sends xinetd's 'DD MON YYYY HH:MM:SS ZONE\\r\\n' (local time) and closes."""
    with connect(superd, "daytime", host) as sock:
        assert_daytime(read_all(sock))


@pytest.mark.parametrize("host", HOSTS)
def test_daytime_udp(superd: Superd, host: str) -> None:
    """daytime/udp replies with the same line."""
    assert_daytime(ask_udp(superd, "daytime", host, b"\n"))


@pytest.mark.parametrize("host", HOSTS)
def test_time_tcp(superd: Superd, host: str) -> None:
    """time/tcp sends 4 bytes of RFC 868 time (seconds since 1900) and closes."""
    with connect(superd, "time", host) as sock:
        assert_time(read_all(sock))


@pytest.mark.parametrize("host", HOSTS)
def test_time_udp(superd: Superd, host: str) -> None:
    """time/udp replies with 4 bytes of RFC 868 time."""
    assert_time(ask_udp(superd, "time", host, b""))


@pytest.mark.parametrize("host", HOSTS)
def test_chargen_tcp(superd: Superd, host: str) -> None:
    """chargen/tcp streams RFC 864 lines: 72 characters of the rotating ring and CRLF."""
    with connect(superd, "chargen", host) as sock:
        data = read_exactly(sock, 74 * 300)
    assert_chargen_lines(data)


@pytest.mark.parametrize("host", HOSTS)
def test_chargen_udp(superd: Superd, host: str) -> None:
    """chargen/udp replies with one 74-byte line per datagram."""
    reply = ask_udp(superd, "chargen", host, b"go")
    assert len(reply) == 74
    assert_chargen_lines(reply)


# -- clients that misbehave ---------------------------------------------------

def _garbage(superd: Superd, host: str, i: int) -> None:
    with connect(superd, "echo", host) as sock:
        sock.sendall(os.urandom(1 + i % 3000))  # closed without reading the echo


def _half_close(superd: Superd, host: str, i: int) -> None:
    with connect(superd, "echo", host) as sock:
        sock.sendall(b"half")
        sock.shutdown(socket.SHUT_WR)
        assert read_all(sock) == b"half"


def _reset(superd: Superd, host: str, i: int) -> None:
    name = ("chargen", "echo", "discard", "daytime")[i % 4]
    sock = connect(superd, name, host)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    if name != "chargen":
        sock.sendall(b"reset me")
    sock.close()  # linger 0: RST instead of FIN


def _stalled_chargen(superd: Superd, host: str, count: int) -> None:
    """Open chargen connections that never read, let them fill, then drop them."""
    socks = []
    for _ in range(count):
        sock = connect(superd, "chargen", host)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        socks.append(sock)
    time.sleep(0.5)  # the server's buffers and the kernel's fill up meanwhile
    for i, sock in enumerate(socks):
        if i % 2:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        sock.close()


def test_thousand_bad_clients_leak_nothing(idle_superd: Superd) -> None:
    """
    1,000 connections that send garbage, never read, half-close or reset
    leave superd with the descriptors it had when idle, still serving.
    """
    superd = idle_superd
    idle = superd.idle_fds()
    misbehave = (_garbage, _half_close, _reset)
    done = 0
    for round_ in range(10):
        host = HOSTS[round_ % 2]
        _stalled_chargen(superd, host, 10)
        done += 10
        for i in range(90):
            misbehave[i % 3](superd, host, i)
            done += 1
    assert done == 1000
    for host in HOSTS:
        for payload in (b"", os.urandom(1500)):
            for name in NAMES:
                port = superd.port(f"{name}-dgram", "udp", host)
                with socket.socket(family(host), socket.SOCK_DGRAM) as sock:
                    sock.sendto(payload, (host, port))
    assert not superd.fds_beyond(idle, timeout=15)
    with connect(superd, "echo", "127.0.0.1") as sock:
        sock.sendall(b"still here")
        assert read_exactly(sock, 10) == b"still here"
    assert superd.process.poll() is None


def test_builtins_file_is_valid_configuration(tmp_path: Path) -> None:
    """The generated builtin blocks pass ``superd check`` (so failures above are real)."""
    from superd.cli.main import main

    for name in NAMES:
        (tmp_path / name).write_text(builtin_file(name))
    assert main(["check", "-c", str(tmp_path)]) == 0
