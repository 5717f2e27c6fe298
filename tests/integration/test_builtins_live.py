"""
The builtins under the real daemon and real sockets, for what fakes cannot
show: the kernel's back-pressure reaching the client, superd's memory while
clients refuse to read, and the anti-reflection guard against real source
ports (binding ports below 1024 needs root; those cases skip otherwise).
"""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from superd.handlers.builtins.chargen import CYCLE
from superd.observe.events import EV_REFLECTION_DROP
from tests.integration.conftest import _crash_report
from tests.integration.harness import Superd, on_free_ports, start_superd

HOST = "127.0.0.1"
#: A second loopback address: a "client host" whose ports do not clash with superd's.
CLIENT = "127.0.0.2"
#: How much superd's resident memory may grow while clients refuse to read.
RSS_SLACK = 24 * 1024 * 1024


def service_block(name: str, kind: str, port: int) -> str:
    wait = "yes" if kind == "dgram" else "no"
    return (f"service {name}\n{{\n\tid = {name}-{kind}\n\ttype = INTERNAL UNLISTED\n"
            f"\tsocket_type = {kind}\n\twait = {wait}\n\tport = {port}\n"
            f"\tbind = {HOST}\n\tcps = 100000 1\n}}\n")


def start_live(tmp_path_factory: pytest.TempPathFactory, udp_ports: list[int]) -> Superd:
    conf = tmp_path_factory.mktemp("live-conf")
    for name, udp_port in zip(("echo", "chargen"), udp_ports, strict=True):
        text = service_block(name, "stream", 0) + service_block(name, "dgram", udp_port)
        (conf / name).write_text(text)
    return start_superd(str(conf), state_dir=str(tmp_path_factory.mktemp("live-state")))


@pytest.fixture(scope="module")
def daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Superd]:
    """echo and chargen on TCP (kernel-chosen ports) and UDP (fixed ports:
    the UDP builtins protect each other's configured ports)."""
    yield from running_live(tmp_path_factory)


@pytest.fixture
def idle_daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Superd]:
    """A daemon of its own, for a test that counts descriptors from idle:
    no connection of another test can be closing meanwhile."""
    yield from running_live(tmp_path_factory)


def running_live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Superd]:
    superd = on_free_ports(lambda ports: start_live(tmp_path_factory, ports), 2,
                           socket.SOCK_DGRAM)
    yield superd
    problem = _crash_report(superd)
    superd.stop()
    if problem:
        pytest.fail(problem)


def rss(superd: Superd) -> int:
    """The daemon's resident set size in bytes."""
    for line in Path(f"/proc/{superd.pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


def connect(superd: Superd, name: str) -> socket.socket:
    return socket.create_connection((HOST, superd.port(f"{name}-stream", "tcp", HOST)), 5)


def test_echo_client_that_never_reads_is_held_back(daemon: Superd) -> None:
    """
    A client that floods echo without reading its replies is stopped by TCP
    flow control within a few MB: superd stops reading, so its memory does
    not grow with what the client tries to send.
    """
    before = rss(daemon)
    with connect(daemon, "echo") as sock:
        sock.setblocking(False)
        block, sent = os.urandom(64 * 1024), 0
        deadline = time.monotonic() + 5
        last_progress = time.monotonic()
        # Send until flow control has held the client back for half a second.
        while time.monotonic() - last_progress < 0.5 and time.monotonic() < deadline:
            try:
                sent += sock.send(block)
                last_progress = time.monotonic()
            except BlockingIOError:
                time.sleep(0.01)
        assert sent < 64 * 1024 * 1024, "echo kept reading without anyone reading the echo"
        assert rss(daemon) - before < RSS_SLACK


def test_stalled_chargen_readers_cost_bounded_memory(daemon: Superd) -> None:
    """Twenty chargen clients that never read leave superd's memory bounded."""
    before = rss(daemon)
    socks = [connect(daemon, "chargen") for _ in range(20)]
    try:
        time.sleep(1)
        assert rss(daemon) - before < RSS_SLACK
    finally:
        for sock in socks:
            sock.close()


def test_chargen_stream_is_the_pattern(daemon: Superd) -> None:
    """Four megabytes of TCP chargen are exactly the RFC 864 cycle, repeated."""
    size = 4 * 1024 * 1024
    data = bytearray()
    with connect(daemon, "chargen") as sock:
        while len(data) < size:
            chunk = sock.recv(1 << 20)
            assert chunk
            data += chunk
    cycles = (CYCLE * (size // len(CYCLE) + 1))[:size]
    assert bytes(data[:size]) == cycles


def udp_exchange(daemon: Superd, service_id: str, source_port: int) -> bytes | None:
    """
    Send a datagram from CLIENT:source_port; the daemon's reply, or None if
    none came.  Datagrams from anyone else are ignored: a fixed source port
    is shared (SO_REUSEADDR) with whatever else runs on this machine.
    """
    server = (HOST, daemon.port(service_id, "udp", HOST))
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((CLIENT, source_port))
        sock.sendto(b"ping", server)
        deadline = time.monotonic() + 0.5
        while (left := deadline - time.monotonic()) > 0:
            sock.settimeout(left)
            try:
                data, sender = sock.recvfrom(2048)
            except TimeoutError:
                break
            if sender == server:
                return data
        return None


def test_udp_echo_answers_an_ordinary_port(daemon: Superd) -> None:
    """An unprivileged, unprotected source port gets its echo."""
    assert udp_exchange(daemon, "echo-dgram", 0) == b"ping"


def test_udp_echo_ignores_another_builtins_port(daemon: Superd) -> None:
    """A datagram claiming to come from chargen/udp's port gets no reply, and is logged."""
    chargen_port = daemon.port("chargen-dgram", "udp", HOST)
    assert udp_exchange(daemon, "echo-dgram", chargen_port) is None
    drop = daemon.wait_for_event(
        lambda e: e.get("event") == EV_REFLECTION_DROP and e.get("peer_port") == chargen_port)
    assert drop["reason"] == "protected_port"


@pytest.mark.skipif(os.geteuid() != 0, reason="binding a port below 1024 needs root")
@pytest.mark.parametrize(("source_port", "answered"), [(7, False), (1023, False), (1024, True)])
def test_udp_chargen_privileged_source_ports(daemon: Superd, source_port: int,
                                             answered: bool) -> None:
    """chargen/udp never answers ports below 1024 (the echo-chargen loop); 1024 is answered."""
    reply = udp_exchange(daemon, "chargen-dgram", source_port)
    assert (reply is not None) is answered
    if reply is not None:
        assert len(reply) == 74


def test_chargen_notices_clients_that_close_without_it_reading(idle_daemon: Superd) -> None:
    """
    Chargen never reads its clients, yet a client that closes (after a
    half-close, or straight away) releases superd's descriptor: the next
    write fails and the connection is torn down.
    """
    daemon = idle_daemon
    idle = daemon.idle_fds()
    for i in range(20):
        with connect(daemon, "chargen") as sock:
            sock.sendall(b"ignored input")
            assert len(sock.recv(65536)) > 0
            if i % 2:
                sock.shutdown(socket.SHUT_WR)
                assert len(sock.recv(65536)) > 0  # half-closed: still served
    assert not daemon.fds_beyond(idle)
