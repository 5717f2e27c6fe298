"""Tests for superd.net.sockets: listen addresses from configuration, and sockets."""

from __future__ import annotations

import socket
from typing import Any

import pytest
from twisted.internet.address import IPv4Address
from twisted.internet.error import CannotListenError
from twisted.internet.protocol import DatagramProtocol, ServerFactory
from twisted.internet.testing import MemoryReactor

from superd.config.model import Location, SocketType
from superd.net.address import ListenAddress
from superd.net.sockets import (
    BindError,
    bind_socket,
    endpoint_description,
    listen_addresses,
    listen_datagram,
    listen_stream,
    open_with_fallback,
)
from tests.builders import echo_service as make_service


def address(**kw: Any) -> ListenAddress:
    values: dict[str, Any] = dict(
        service_id="echo", name="echo", host="127.0.0.1", port=0,
        socket_type=SocketType.STREAM, location=Location("conf/echo", 7),
    )
    values.update(kw)
    return ListenAddress(**values)


def test_no_bind_listens_on_ipv6_wildcard() -> None:
    """Without bind, a service listens once on ``::`` (dual-stack, as xinetd)."""
    (only,) = listen_addresses(make_service())
    assert (only.host, only.port, only.family) == ("::", 10007, socket.AF_INET6)


def test_ipv4_flag_without_bind_listens_on_ipv4_wildcard() -> None:
    """``flags = IPv4`` without bind listens on 0.0.0.0 only."""
    (only,) = listen_addresses(make_service(flags=frozenset({"IPv4"})))
    assert (only.host, only.family) == ("0.0.0.0", socket.AF_INET)


def test_one_address_per_bind_value() -> None:
    """Several bind addresses give one listen address each, in order, with families."""
    service = make_service(bind=("127.0.0.1", "::1"),
                           lines={"bind": Location("conf/echo", 4)})
    addresses = listen_addresses(service, backlog=77)
    assert [(a.host, a.family, a.backlog) for a in addresses] == [
        ("127.0.0.1", socket.AF_INET, 77), ("::1", socket.AF_INET6, 77)]
    assert {str(a.location) for a in addresses} == {"conf/echo:4"}


def test_flags_and_v6only_carried() -> None:
    """NODELAY, KEEPALIVE and v6only reach the listen address."""
    service = make_service(flags=frozenset({"NODELAY", "KEEPALIVE"}), v6only=True)
    (only,) = listen_addresses(service)
    assert (only.nodelay, only.keepalive, only.v6only) == (True, True, True)
    assert only.needs_own_socket


def test_endpoint_description_escapes_ipv6() -> None:
    """Stream addresses become Twisted endpoint strings with colons escaped."""
    assert endpoint_description(address(host="::1", port=7, backlog=5)) == (
        "tcp:7:interface=\\:\\:1:backlog=5")


def test_describe() -> None:
    """Addresses are shown as people write them, IPv6 in brackets."""
    assert address(host="::1", port=7).describe() == "tcp [::1]:7"
    assert address(socket_type=SocketType.DGRAM).describe(9) == "udp 127.0.0.1:9"


def test_listen_stream_uses_endpoint_string() -> None:
    """A plain stream address listens through the endpoint (listenTCP, backlog)."""
    reactor = MemoryReactor()
    factory = ServerFactory()
    listen_stream(reactor, address(host="::1", port=7, backlog=33), factory)
    assert reactor.tcpServers == [(7, factory, 33, "::1")]


def test_listen_stream_v6only_adopts_own_socket() -> None:
    """An explicit v6only makes the socket here and adopts it (endpoints cannot)."""
    reactor = MemoryReactor()
    listen_stream(reactor, address(host="::1", v6only=True), ServerFactory())
    ((fileno, family, _factory),) = reactor.adoptedPorts
    assert family == socket.AF_INET6 and isinstance(fileno, int)
    assert reactor.tcpServers == []


class RefusingReactor(MemoryReactor):
    def listenTCP(self, port: int, factory: Any, backlog: int = 50,
                  interface: str = "") -> Any:
        raise CannotListenError(interface, port, OSError(98, "Address already in use"))

    def listenUDP(self, port: int, protocol: Any, interface: str = "",
                  maxPacketSize: int = 8192) -> Any:
        raise CannotListenError(interface, port, OSError(98, "Address already in use"))


def test_listen_failure_names_service_address_and_line() -> None:
    """A refused listen becomes a BindError naming file:line, service and address."""
    with pytest.raises(BindError) as caught:
        listen_stream(RefusingReactor(), address(port=7), ServerFactory())
    assert str(caught.value) == (
        "conf/echo:7: service echo: cannot listen on tcp 127.0.0.1:7: Address already in use")


def test_listen_datagram_failure_is_bind_error() -> None:
    """A refused UDP listen is reported the same way."""
    with pytest.raises(BindError, match=r"cannot listen on udp \[::1\]:7: Address already"):
        listen_datagram(RefusingReactor(),
                        address(host="::1", port=7, socket_type=SocketType.DGRAM),
                        DatagramProtocol())


class UDPRecordingReactor(MemoryReactor):
    def __init__(self) -> None:
        super().__init__()
        self.udp: list[tuple[int, str, int]] = []

    def listenUDP(self, port: int, protocol: Any, interface: str = "",
                  maxPacketSize: int = 8192) -> Any:
        self.udp.append((port, interface, maxPacketSize))
        return RecordingPort(IPv4Address("UDP", interface, port or 4242))


class RecordingPort:
    def __init__(self, host: Any) -> None:
        self.host = host

    def getHost(self) -> Any:
        return self.host


def test_listen_datagram_uses_listen_udp() -> None:
    """A plain datagram address uses listenUDP on its interface, reading big datagrams."""
    reactor = UDPRecordingReactor()
    listen_datagram(reactor, address(port=9, socket_type=SocketType.DGRAM), DatagramProtocol())
    assert reactor.udp == [(9, "127.0.0.1", 65535)]


def test_bind_socket_taken_port() -> None:
    """Binding a port another socket holds fails with the kernel's reason."""
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen(1)
        port = holder.getsockname()[1]
        with pytest.raises(BindError, match="Address already in use"):
            bind_socket(address(port=port))


def test_bind_socket_v6only_both_ways() -> None:
    """v6only is honoured as written: yes is IPv6-only, no is dual-stack."""
    for wanted in (True, False):
        sock = bind_socket(address(host="::", v6only=wanted))
        with sock:
            value = sock.getsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY)
            assert bool(value) is wanted


def test_accepted_connections_inherit_nodelay_and_keepalive() -> None:
    """NODELAY/KEEPALIVE set on the listener are on every accepted socket (Linux)."""
    listener = bind_socket(address(nodelay=True, keepalive=True))
    with listener, socket.create_connection(listener.getsockname()):
        listener.setblocking(True)
        accepted, _ = listener.accept()
        with accepted:
            assert accepted.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)
            assert accepted.getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE)


def test_udp_socket_not_reuseaddr() -> None:
    """UDP sockets do not set SO_REUSEADDR, so a second bind of the port fails loudly."""
    first = bind_socket(address(socket_type=SocketType.DGRAM))
    with first:
        assert not first.getsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR)
        taken = first.getsockname()[1]
        with pytest.raises(BindError):
            bind_socket(address(socket_type=SocketType.DGRAM, port=taken))


def test_wildcard_without_bind_may_fall_back_to_ipv4() -> None:
    """Only a service without bind (and not IPv6-only) falls back to IPv4, as xinetd."""
    (plain,) = listen_addresses(make_service())
    (v6_only,) = listen_addresses(make_service(flags=frozenset({"IPv6"})))
    (both,) = listen_addresses(make_service(flags=frozenset({"IPv4", "IPv6"})))
    bound = listen_addresses(make_service(bind=("::",)))
    assert (plain.ipv4_fallback, v6_only.ipv4_fallback, both.ipv4_fallback) == (
        True, False, True)
    assert not bound[0].ipv4_fallback


def test_open_with_fallback_retries_on_ipv4_without_ipv6() -> None:
    """EAFNOSUPPORT on the IPv6 wildcard retries on 0.0.0.0; other errors propagate."""
    import errno

    tried: list[str] = []

    def open_port(where: ListenAddress) -> str:
        tried.append(where.host)
        if where.host == "::":
            raise BindError(where, "Address family not supported", errno.EAFNOSUPPORT)
        return "port"

    (wildcard,) = listen_addresses(make_service())
    used, port = open_with_fallback(open_port, wildcard)
    assert (used.host, port, tried) == ("0.0.0.0", "port", ["::", "0.0.0.0"])

    def taken(where: ListenAddress) -> str:
        raise BindError(where, "Address already in use", errno.EADDRINUSE)

    with pytest.raises(BindError, match="already in use"):
        open_with_fallback(taken, wildcard)


def test_bind_error_carries_errno() -> None:
    """Kernel refusals keep their errno, so callers can tell them apart."""
    import errno

    with pytest.raises(BindError) as caught:
        listen_stream(RefusingReactor(), address(port=7), ServerFactory())
    assert caught.value.errno == errno.EADDRINUSE


@pytest.mark.parametrize("nodelay", [False, True], ids=["listenTCP", "own socket"])
def test_real_reactor_listens_on_a_taking_port(nodelay: bool) -> None:
    """On a real (unstarted) reactor a stream service listens on superd's
    TakingPort, both when bound like listenTCP and on a socket made here
    (NODELAY), so accepted sockets can go to children without a transport."""
    from twisted.internet.epollreactor import EPollReactor

    from superd.net.takingport import TakingPort

    reactor = EPollReactor()
    port = listen_stream(reactor, address(nodelay=nodelay), ServerFactory())
    try:
        assert isinstance(port, TakingPort) and port.getHost().port > 0
    finally:
        port.connectionLost(None)  # type: ignore[attr-defined]


@pytest.mark.parametrize("v6only", [None, True], ids=["listenUDP", "own socket"])
def test_real_reactor_listens_on_a_bounded_datagram_port(v6only: bool | None) -> None:
    """On a real (unstarted) reactor a datagram service listens on superd's
    DatagramPort, both when bound like listenUDP and on a socket made here
    (v6only), so a flood of tiny datagrams cannot hold the reactor."""
    from twisted.internet.epollreactor import EPollReactor

    from superd.net.datagramport import DatagramPort

    host = "127.0.0.1" if v6only is None else "::1"
    try:
        port = listen_datagram(EPollReactor(), address(
            host=host, v6only=v6only, socket_type=SocketType.DGRAM), DatagramProtocol())
    except BindError as e:  # a host without IPv6
        pytest.skip(str(e))
    try:
        assert isinstance(port, DatagramPort) and port.getHost().port > 0
    finally:
        port.stopListening()
