"""
``redirect = host port`` run by the real daemon: relaying to superd's own
echo on another port (byte-exact, with half-close), TRAFFIC lines, an
upstream that refuses, an upstream that never answers (connect timeout),
and the access rules applied before any upstream connection is made.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.integration.external import read_all
from tests.integration.harness import Superd

ECHO = """service echo
{
	id          = echo-up
	type        = INTERNAL UNLISTED
	socket_type = stream
	wait        = no
	port        = 0
	bind        = 127.0.0.1
}
"""


def relay_block(port: int, *, extra: str = "", host: str = "127.0.0.1",
                name: str = "relay") -> str:
    return (f"service {name}\n{{\n\ttype = UNLISTED\n\tsocket_type = stream\n\twait = no\n"
            f"\tport = 0\n\tbind = 127.0.0.1\n\tuser = root\n\tredirect = {host} {port}\n"
            f"\tlog_on_success = HOST PID EXIT DURATION TRAFFIC\n\tlog_on_failure = HOST\n"
            f"{extra}}}\n")


@pytest.fixture
def closed_port() -> Iterator[int]:
    """A port that refuses connections: bound by the test, never listening,
    so no other process can open it meanwhile."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        yield int(sock.getsockname()[1])


def start_with_upstream(superd_factory: Callable[..., Superd], conf_dir: Callable[..., Path],
                        upstream_port: int, extra: str = "") -> Superd:
    return superd_factory(conf_dir(relay=relay_block(upstream_port, extra=extra)))


@pytest.fixture
def echo_daemon(superd_factory: Callable[..., Superd], conf_dir: Callable[..., Path]) -> Superd:
    """A daemon serving the upstream echo (the relay runs in a second daemon)."""
    return superd_factory(conf_dir(echo=ECHO))


def test_relay_to_echo_with_half_close(echo_daemon: Superd, superd_factory: Callable[..., Superd],
                                       conf_dir: Callable[..., Path]) -> None:
    """1 MiB sent then SHUT_WR comes back whole, then EOF; TRAFFIC counts both ways."""
    relay = start_with_upstream(superd_factory, conf_dir, echo_daemon.port("echo-up"))
    payload = bytes(range(256)) * 4096
    with socket.create_connection(("127.0.0.1", relay.port("relay")), timeout=10) as sock:
        received: list[bytes] = []
        reader = threading.Thread(target=lambda: received.append(read_all(sock)))
        reader.start()
        sock.sendall(payload)
        sock.shutdown(socket.SHUT_WR)
        reader.join(15)
    assert received == [payload]
    line = f"TRAFFIC: relay in={len(payload)}(bytes) out={len(payload)}(bytes)"
    relay.wait_for_event(lambda e: e.get("xinetd_line") == line, timeout=5)
    relay.wait_for_event(lambda e: str(e.get("xinetd_line")).startswith("EXIT: relay status=0"))
    assert "START: relay pid=0 from=127.0.0.1" in relay.xinetd_lines()


def test_upstream_refuses(superd_factory: Callable[..., Superd],
                          conf_dir: Callable[..., Path], closed_port: int) -> None:
    """A closed upstream port: the client sees a close, the failure is logged, no leak."""
    relay = start_with_upstream(superd_factory, conf_dir, closed_port)
    relay.allow_errors = True
    before = relay.idle_fds()
    for _ in range(20):
        with socket.create_connection(("127.0.0.1", relay.port("relay")), timeout=5) as sock:
            sock.settimeout(5)
            assert read_all(sock) == b""
    relay.wait_for_event(lambda e: e.get("event") == "redirect_failed", timeout=5)
    assert not relay.fds_beyond(before)


def test_upstream_connect_timeout(superd_factory: Callable[..., Superd],
                                  conf_dir: Callable[..., Path]) -> None:
    """An upstream that never accepts (full backlog) is given up after redirect_timeout."""
    with socket.socket() as hung:
        hung.bind(("127.0.0.1", 0))
        hung.listen(0)
        fillers = []
        port = hung.getsockname()[1]
        for _ in range(8):  # fill the backlog so further SYNs are dropped
            f = socket.socket()
            f.setblocking(False)
            f.connect_ex(("127.0.0.1", port))
            fillers.append(f)
        relay = start_with_upstream(superd_factory, conf_dir, port, "\tredirect_timeout = 1\n")
        try:
            with socket.create_connection(("127.0.0.1", relay.port("relay")), timeout=10) as sock:
                started = time.monotonic()
                sock.settimeout(10)
                assert read_all(sock) == b""
                assert 0.5 < time.monotonic() - started < 6
            event = relay.wait_for_event(lambda e: e.get("event") == "redirect_failed", 5)
            assert "timeout" in event["reason"].lower() or "timed out" in event["reason"].lower()
        finally:
            for f in fillers:
                f.close()


def test_access_refused_before_connecting(echo_daemon: Superd,
                                          superd_factory: Callable[..., Superd],
                                          conf_dir: Callable[..., Path]) -> None:
    """A peer refused by only_from gets FAIL address and the upstream sees no connection."""
    relay = start_with_upstream(superd_factory, conf_dir, echo_daemon.port("echo-up"),
                                "\tonly_from = 127.0.0.2\n")
    with socket.create_connection(("127.0.0.1", relay.port("relay")), timeout=5) as sock:
        sock.settimeout(5)
        assert read_all(sock) == b""
    relay.wait_for_event(lambda e: e.get("xinetd_line") == "FAIL: relay address from=127.0.0.1")
    assert not [e for e in echo_daemon.events() if e.get("event") == "start"]


CHARGEN = ECHO.replace("service echo", "service chargen").replace("echo-up", "chargen-up")



def test_back_pressure_both_ways(superd_factory: Callable[..., Superd],
                                 conf_dir: Callable[..., Path]) -> None:
    """A client that never reads chargen, or an upstream that never reads: memory stays flat."""
    upstream = superd_factory(conf_dir(chargen=CHARGEN))
    relay = start_with_upstream(superd_factory, conf_dir, upstream.port("chargen-up"))
    before = relay.rss_kib()
    with socket.create_connection(("127.0.0.1", relay.port("relay")), timeout=5) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        time.sleep(2)  # chargen pushes as fast as the relay lets it
        assert relay.rss_kib() - before < 16 * 1024
        assert len(sock.recv(4096)) > 0  # the relay is alive and still delivering
    with socket.socket() as sink:  # an upstream that accepts and never reads
        sink.bind(("127.0.0.1", 0))
        sink.listen(1)
        stalled = start_with_upstream(superd_factory, conf_dir, sink.getsockname()[1])
        start = stalled.rss_kib()
        with socket.create_connection(("127.0.0.1", stalled.port("relay")), timeout=5) as sock:
            sock.setblocking(False)
            sent, deadline = 0, time.monotonic() + 2
            while time.monotonic() < deadline:
                try:
                    sent += sock.send(b"x" * 65536)
                except BlockingIOError:
                    time.sleep(0.01)
            assert sent < 32 * 1024 * 1024  # the client was stopped, not buffered for
            assert stalled.rss_kib() - start < 16 * 1024


def test_relay_to_ipv6_upstream(superd_factory: Callable[..., Superd],
                                conf_dir: Callable[..., Path]) -> None:
    """redirect = ::1 PORT connects over IPv6 (TCP6 endpoint)."""
    upstream = superd_factory(conf_dir(echo=ECHO.replace("bind        = 127.0.0.1",
                                                         "bind        = ::1")))
    relay = superd_factory(conf_dir(relay=relay_block(upstream.port("echo-up", host="::1"),
                                                      host="::1")))
    with socket.create_connection(("127.0.0.1", relay.port("relay")), timeout=10) as sock:
        sock.sendall(b"six\n")
        sock.shutdown(socket.SHUT_WR)
        assert read_all(sock) == b"six\n"


def test_a_client_gone_after_its_eof_ends_the_relay(superd_factory: Callable[..., Superd],
                                                    conf_dir: Callable[..., Path]) -> None:
    """A client that shuts down writing and then leaves, while its upstream
    keeps sending: the relay no longer reads the client, so only a write
    meets the reset; the relay must still end (TRAFFIC logged, the upstream
    closed) instead of relaying into the void for ever."""
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(1)
        relay = start_with_upstream(superd_factory, conf_dir, server.getsockname()[1])
        with socket.create_connection(("127.0.0.1", relay.port("relay")), timeout=10) as sock:
            server.settimeout(10)
            upstream, _ = server.accept()
            with upstream:
                upstream.settimeout(10)
                sock.shutdown(socket.SHUT_WR)
                assert upstream.recv(10) == b""  # the client's EOF, carried
                upstream.sendall(b"first\n")
                assert sock.recv(10) == b"first\n"
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                                b"\x01\x00\x00\x00\x00\x00\x00\x00")
                sock.close()  # a reset: the relay's next write to it fails
                deadline = time.monotonic() + 10
                closed = False
                while not closed and time.monotonic() < deadline:
                    try:
                        upstream.sendall(b"more\n")
                    except OSError:
                        closed = True
                    time.sleep(0.01)
                assert closed
        relay.wait_for_event(lambda e: "TRAFFIC" in str(e.get("xinetd_line", "")))
