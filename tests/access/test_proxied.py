"""
Tests for ``superd.access.proxied``: a service behind a load balancer
reads the PROXY header on a real loopback connection (the accepted side a
real ``tcp.Server`` on a memory reactor, driven by hand), then admits --
or refuses -- the client the header names.
"""

from __future__ import annotations

import select
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import attrs
import pytest
from twisted.internet import tcp
from twisted.internet.address import IPv4Address
from twisted.internet.error import ConnectionLost
from twisted.python.failure import Failure

from superd.access.factory import AccessControlledFactory
from superd.access.proxied import HeaderGate, ProxiedFactory, stream_factory
from superd.access.state import AccessState
from superd.config.model import Extensions, ProxySettings
from superd.core.origin import COMMAND_LOCAL, COMMAND_PROXY
from superd.core.session import Peer
from superd.net.proxyreader import HeaderReader
from superd.net.proxywire import build_header
from tests.access.helpers import RecordingHandler, fail_lines, make_access, service, specs
from tests.handlers.spawn.helpers import connected_server

HOST = frozenset({"HOST"})
CLIENT = Peer("192.0.2.1", 1234)
FRONT = Peer("198.51.100.7", 443)


@pytest.fixture
def access(tmp_path: Path) -> Iterator[AccessState]:
    state = make_access(tmp_path)
    yield state
    state.stopService()


def proxied(access: AccessState, versions: frozenset[int] = frozenset({1, 2}),
            sources: Any = None, timeout: float = 5.0,
            **changes: Any) -> tuple[ProxiedFactory, RecordingHandler]:
    changes.setdefault("log_on_failure", HOST)
    settings = ProxySettings(versions, sources, timeout)
    handler = RecordingHandler()
    svc = service(extensions=Extensions(proxy=settings), **changes)
    factory = stream_factory(svc, handler, access)
    assert isinstance(factory, ProxiedFactory)
    return factory, handler


@attrs.define
class Connection:
    """One connection from the "load balancer" to the factory."""

    factory: ProxiedFactory
    server: tcp.Server
    client: socket.socket

    @property
    def reactor(self) -> Any:
        return self.factory.runtime.reactor

    def timers(self) -> list[Any]:
        """The pending header timeouts."""
        return [call for call in self.reactor.getDelayedCalls()
                if getattr(call.func, "__name__", "") == "_timed_out"]

    def readers(self) -> list[Any]:
        return [r for r in self.reactor.readers if isinstance(r, HeaderReader)]

    def send(self, data: bytes) -> None:
        """Send ``data`` and let the header reader see it (if it still reads)."""
        if data:
            self.client.sendall(data)
        readers = self.readers()
        if readers:
            select.select([self.server.socket], [], [], 5)
            readers[0].doRead()

    def deliver(self) -> None:
        """Let Twisted read what is queued (once it reads again)."""
        select.select([self.server.socket], [], [], 5)
        self.server.doRead()


def connect(factory: ProxiedFactory) -> Connection | None:
    """A loopback connection from 127.0.0.1, accepted by ``factory``."""
    protocol = factory.buildProtocol(IPv4Address("TCP", "127.0.0.1", 50000))
    if protocol is None:
        return None
    server, client = connected_server(protocol, factory.runtime.reactor)
    return Connection(factory, server, client)


def through(factory: ProxiedFactory, client: Peer = CLIENT,
            version: int = 1) -> Connection:
    connection = connect(factory)
    assert connection is not None
    connection.send(build_header(version, client, FRONT))
    return connection


def test_only_proxied_services_get_the_proxied_factory(access: AccessState) -> None:
    """Without proxy_protocol a service keeps the plain factory and its
    bare-descriptor path; with it, every connection goes through the gate."""
    plain = stream_factory(service(), RecordingHandler(), access)
    assert type(plain) is AccessControlledFactory
    factory, _ = proxied(access)
    assert factory.take_connection is None
    assert isinstance(factory.buildProtocol(IPv4Address("TCP", "127.0.0.1", 1)), HeaderGate)


@pytest.mark.parametrize("version", [1, 2])
def test_header_names_the_peer_and_the_rest_is_served(access: AccessState,
                                                      version: int) -> None:
    """The client the header names is the session's peer; the bytes sent
    after the header reach the service's protocol, none lost."""
    factory, handler = proxied(access)
    connection = connect(factory)
    assert connection is not None
    connection.send(build_header(version, CLIENT, FRONT) + b"first bytes")
    (session,) = handler.sessions
    assert session.peer == CLIENT
    origin = session.origin
    assert origin is not None
    assert (origin.version, origin.command, origin.destination) == (version, COMMAND_PROXY,
                                                                    FRONT)
    assert origin.proxy.host == "127.0.0.1"
    assert connection.readers() == []
    connection.deliver()
    assert handler.protocols[0].received == b"first bytes"
    connection.server.doWrite()
    assert connection.client.recv(100) == b"served\n"


def test_local_header_keeps_the_proxy_as_peer(access: AccessState) -> None:
    """A v2 LOCAL header (a health check) admits the proxy's own address."""
    factory, handler = proxied(access)
    connection = connect(factory)
    assert connection is not None
    connection.send(b"\r\n\r\n\x00\r\nQUIT\n\x20\x00\x00\x00")
    (session,) = handler.sessions
    assert session.peer is not None and session.peer.host == "127.0.0.1"
    assert session.origin is not None and session.origin.command == COMMAND_LOCAL


def test_source_not_in_proxy_from_refused_unread(access: AccessState,
                                                 log_events: list[dict[str, Any]]) -> None:
    """A source outside proxy_from is refused before a byte is read."""
    factory, handler = proxied(access, sources=specs("10.0.0.0/8"))
    assert connect(factory) is None
    assert handler.sessions == []
    assert fail_lines(log_events) == ["FAIL: svc proxy from=127.0.0.1"]
    (event,) = [e for e in log_events if e.get("event") == "refuse"]
    assert event["detail"] == "not in proxy_from"
    trusted, _ = proxied(access, sources=specs("127.0.0.1"))
    assert connect(trusted) is not None


@pytest.mark.parametrize("data, detail", [
    (b"GET / HTTP/1.0\r\n\r\n", "no PROXY header"),
    (b"PROXY TCP4 192.0.2.1 198.51.100.7 99999 443\r\n", "malformed v1 header (ValueError)"),
    (b"PROXY TCP4 " + b"1" * 200, "a v1 header longer than 107 bytes"),
    (b"\r\n\r\n\x00\r\nQUIT\n\x21\x11\xff\xff", "a v2 header of 65551 bytes (at most 4096)"),
])
def test_bad_header_refused_and_closed(access: AccessState, log_events: list[dict[str, Any]],
                                       data: bytes, detail: str) -> None:
    """Missing, malformed or oversized headers: FAIL proxy, the connection
    closed, nothing served."""
    factory, handler = proxied(access)
    connection = connect(factory)
    assert connection is not None
    connection.send(data)
    assert handler.sessions == []
    assert connection.server.disconnecting
    assert connection.readers() == []
    assert fail_lines(log_events) == ["FAIL: svc proxy from=127.0.0.1"]
    assert [e["detail"] for e in log_events if e.get("event") == "refuse"] == [detail]


def test_version_not_accepted(access: AccessState, log_events: list[dict[str, Any]]) -> None:
    """proxy_protocol = v2 refuses a v1 header."""
    factory, handler = proxied(access, versions=frozenset({2}))
    through(factory, version=1)
    assert handler.sessions == []
    assert fail_lines(log_events) == ["FAIL: svc proxy from=127.0.0.1"]


def test_header_not_finished_in_time(access: AccessState,
                                     log_events: list[dict[str, Any]]) -> None:
    """Half a header then silence: refused when proxy_timeout runs out."""
    factory, handler = proxied(access, timeout=3.0)
    connection = connect(factory)
    assert connection is not None
    connection.send(b"PROXY TCP4 192.0.")
    connection.reactor.advance(2.9)
    assert fail_lines(log_events) == []
    connection.reactor.advance(0.2)
    assert handler.sessions == []
    assert connection.server.disconnecting and connection.readers() == []
    assert [e["detail"] for e in log_events if e.get("event") == "refuse"] == [
        "no complete header within 3s"]


def test_closed_before_the_header(access: AccessState,
                                  log_events: list[dict[str, Any]]) -> None:
    """A proxy that closes before the header ends is refused, timer cancelled."""
    factory, _ = proxied(access)
    connection = connect(factory)
    assert connection is not None
    connection.client.shutdown(socket.SHUT_WR)
    connection.send(b"")
    assert [e["detail"] for e in log_events if e.get("event") == "refuse"] == [
        "connection closed before the header ended"]
    assert connection.timers() == []


def test_connection_lost_while_reading(access: AccessState) -> None:
    """Losing the connection mid-header stops the reader and the timer."""
    factory, _ = proxied(access)
    connection = connect(factory)
    assert connection is not None
    assert len(connection.timers()) == 1
    connection.server.connectionLost(Failure(ConnectionLost()))
    assert connection.readers() == []
    assert connection.timers() == []


def test_access_rules_judge_the_client(access: AccessState,
                                       log_events: list[dict[str, Any]]) -> None:
    """only_from admits or refuses the client the header names, not the proxy."""
    factory, handler = proxied(access, only_from=specs("192.0.2.0/24"))
    through(factory, Peer("192.0.2.77", 5))
    through(factory, Peer("203.0.113.5", 5))
    assert [s.peer for s in handler.sessions] == [Peer("192.0.2.77", 5)]
    assert fail_lines(log_events) == ["FAIL: svc address from=203.0.113.5"]


def test_per_source_counts_clients_by_v6_prefix(access: AccessState,
                                                log_events: list[dict[str, Any]]) -> None:
    """per_source = 2 with v6_source_prefix = 64, clients named by headers:
    two addresses of one /64 fill it, a third is refused, another /64 is not."""
    factory, handler = proxied(access, per_source=2, v6_source_prefix=64)
    for host in ("2001:db8:1:2::1", "2001:db8:1:2::2", "2001:db8:1:2:ffff::3",
                 "2001:db8:1:3::1"):
        through(factory, Peer(host, 5))
    assert [s.peer.host for s in handler.sessions if s.peer] == [
        "2001:db8:1:2::1", "2001:db8:1:2::2", "2001:db8:1:3::1"]
    assert handler.sessions[0].source == "2001:db8:1:2::/64"
    assert fail_lines(log_events) == ["FAIL: svc per_source_limit from=2001:db8:1:2:ffff::3"]


def test_sensor_behind_proxy_bans_the_client(access: AccessState) -> None:
    """A SENSOR behind a proxy bans the client the header names (its /64),
    never the proxy."""
    factory, handler = proxied(access, flags=frozenset({"SENSOR", "NOLIBWRAP"}),
                               deny_time=5, v6_source_prefix=64)
    through(factory, Peer("2001:db8:9:9::1", 5))
    assert handler.sessions == []
    assert access.bans.is_banned("2001:db8:9:9::abcd")
    assert not access.bans.is_banned("127.0.0.1")
