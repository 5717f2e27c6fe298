"""Tests for superd.handlers.spawn.handoff: giving a Twisted TCP socket to a child."""

from __future__ import annotations

import os
import socket
from typing import Any, List

import pytest
from twisted.internet.protocol import Factory, Protocol
from twisted.internet.testing import StringTransport
from twisted.protocols.policies import ProtocolWrapper, WrappingFactory
from twisted.protocols.tls import TLSMemoryBIOFactory

from superd.config.model import TLSSettings
from superd.config.tlscontext import ServerConnectionCreator, server_context
from superd.handlers.spawn.handoff import NotHandOffable, hand_off, raw_tcp_transport
from superd.proc.spawner import ExitStatus, SpawnRequest
from tests.certs import PKI
from tests.handlers.spawn.helpers import connected_server
from tests.proc.test_spawner import real_spawner, wait_reaped


def recv_all(sock: socket.socket) -> bytes:
    chunks = []
    while chunk := sock.recv(65536):
        chunks.append(chunk)
    return b"".join(chunks)


def test_real_cat_echoes_and_parent_keeps_no_copy() -> None:
    """With /bin/cat on the socket: superd's descriptor is closed right after
    the spawn, the child echoes, and the client sees a clean EOF (no RST)
    exactly when the child exits."""
    server, client = connected_server(Protocol())
    fd = server.fileno()
    inode = os.fstat(fd).st_ino
    reapers: List[Any] = []
    statuses: List[ExitStatus] = []
    spawner = real_spawner(reapers)
    hand_off(server, lambda fd: spawner.spawn(
        SpawnRequest("/bin/cat", ("cat",), {}, {0: fd, 1: fd, 2: fd}),
        statuses.append))
    assert not hasattr(server, "socket")
    try:
        assert os.fstat(fd).st_ino != inode  # reused by something else
    except OSError:
        pass  # closed, as expected
    with client:
        client.sendall(b"hello through cat")
        client.shutdown(socket.SHUT_WR)
        assert recv_all(client) == b"hello through cat"
    wait_reaped(reapers, statuses)
    assert statuses[0].code == 0


def test_unwraps_protocol_wrappers() -> None:
    """ProtocolWrapper layers (policies) are looked through to the socket."""
    inner = Protocol()
    wrapper = ProtocolWrapper(WrappingFactory(Factory()), inner)
    server, client = connected_server(wrapper)
    with client:
        assert inner.transport is wrapper  # type: ignore[comparison-overlap]
        assert raw_tcp_transport(inner.transport) is server


def test_stops_at_a_tls_layer(pki: PKI) -> None:
    """Under Twisted's TLS wrapper (itself a ProtocolWrapper) there is no
    plain socket to read or hand off: the raw one carries TLS records."""
    inner = Protocol()
    context = server_context(TLSSettings(cert_pem=pki.server.cert_pem,
                                         key_pem=pki.server.key_pem))
    wrapper = TLSMemoryBIOFactory(ServerConnectionCreator(context), False,
                                  Factory.forProtocol(Protocol)).buildProtocol(None)
    wrapper.wrappedProtocol = inner
    server, client = connected_server(wrapper)
    with client:
        assert inner.transport is wrapper  # type: ignore[comparison-overlap]
        assert raw_tcp_transport(inner.transport) is None
        with pytest.raises(NotHandOffable):
            hand_off(inner.transport, lambda fd: fd)


def test_spawn_failure_closes_with_fin() -> None:
    """If the spawn raises, superd still drops its copy with a plain close:
    the client reads EOF (FIN), not a reset."""
    server, client = connected_server(Protocol())

    def fail(fd: int) -> None:
        raise OSError(2, "No such file or directory")

    with pytest.raises(OSError):
        hand_off(server, fail)
    with client:
        assert client.recv(10) == b""


def test_pending_output_sent_before_child_output() -> None:
    """Bytes written to the transport before the hand-off (a banner) reach
    the client before anything the child writes."""
    server, client = connected_server(Protocol())
    server.write(b"banner\r\n")
    seen: List[int] = []
    hand_off(server, lambda fd: seen.append(os.write(fd, b"child")))
    with client:
        client.settimeout(10)
        assert recv_all(client) == b"banner\r\nchild"


def test_socket_options_and_blocking_before_spawn() -> None:
    """NODELAY and KEEPALIVE are set and the socket is blocking when the
    child gets it (the options travel with the socket)."""
    server, client = connected_server(Protocol())
    seen = {}

    def inspect(fd: int) -> None:
        sock = socket.socket(fileno=os.dup(fd))
        with sock:
            seen["nodelay"] = sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)
            seen["keepalive"] = sock.getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE)
        seen["blocking"] = os.get_blocking(fd)

    hand_off(server, inspect, nodelay=True, keepalive=True)
    client.close()
    assert seen == {"nodelay": 1, "keepalive": 1, "blocking": True}


def test_not_tcp_is_refused() -> None:
    """A transport that is not a plain TCP socket cannot be handed off."""
    with pytest.raises(NotHandOffable):
        hand_off(StringTransport(), lambda fd: None)
