"""
Tests of ``superd.handlers.tls.sni``: the ClientHello of each connection to a
shared TLS port chooses the service (exact name, wildcard, default), whose
own factory then decides and whose protocol gets every byte; a name nobody
routes is an ``unrecognized_name`` alert, garbage or silence a close, each
an ``sni_refused`` event of the port, and a flood of them is not a log flood.
"""

from __future__ import annotations

from typing import Any, Optional

import attrs
import pytest
from twisted.internet.address import IPv4Address
from twisted.internet.protocol import Protocol
from twisted.internet.testing import MemoryReactorClock, StringTransport

from superd.core.runtime import Runtime
from superd.handlers.tls.sni import (
    MAX_BUFFERED,
    REFUSAL_BURST,
    REFUSAL_WINDOW,
    HelloReader,
    SNIRouter,
    alert,
)
from tests.handlers.tls.test_clienthello import (
    client_hello,
    frame,
    server_name_extension,
    with_extension,
)


class Served(Protocol):
    """What a chosen service's factory returns: records what it got."""

    def __init__(self) -> None:
        self.data = b""

    def dataReceived(self, data: bytes) -> None:
        self.data += data


@attrs.define(eq=False)
class Member:
    """A service on the shared port, with a factory that admits or refuses."""

    names: tuple[str, ...] = ()
    hello_timeout: float = 10.0
    admit: bool = True
    built: list[Any] = attrs.Factory(list)

    @property
    def factory(self) -> Any:
        return self

    def buildProtocol(self, addr: Any) -> Optional[Protocol]:
        protocol = Served() if self.admit else None
        self.built.append((addr, protocol))
        return protocol

    def start(self) -> None:
        pass

    def stop(self) -> None:
        pass


CLIENT = IPv4Address("TCP", "10.1.2.3", 40000)


@attrs.define
class Port:
    reactor: MemoryReactorClock
    router: SNIRouter


def port(*members: Member) -> Port:
    reactor = MemoryReactorClock()
    router = SNIRouter(Runtime(reactor=reactor))
    router.route(members)
    return Port(reactor, router)


def connect(shared: Port) -> tuple[HelloReader, StringTransport]:
    reader = shared.router.buildProtocol(CLIENT)
    transport = StringTransport(hostAddress=IPv4Address("TCP", "127.0.0.1", 443),
                                peerAddress=CLIENT)
    reader.makeConnection(transport)
    return reader, transport


def refusals(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [e for e in events if e.get("event") == "sni_refused"]


def test_lookup_exact_then_wildcard_then_default() -> None:
    """An exact name wins over a wildcard, which covers one label; else the default."""
    a, wild, default = Member(("a.example.com",)), Member(("*.example.com",)), Member()
    router = port(a, wild, default).router
    assert router.lookup("a.example.com") is a
    assert router.lookup("b.example.com") is wild
    assert router.lookup("x.b.example.com") is default
    assert router.lookup(None) is default
    assert port(a).router.lookup("b.example.com") is None


def test_the_named_service_gets_the_connection_and_every_byte() -> None:
    """Bytes arriving one by one: once the ClientHello is whole, its service's
    factory decides and its protocol gets the same transport and all bytes."""
    a, b = Member(("a.example.com",)), Member(("b.example.com",))
    reader, transport = connect(port(a, b))
    hello = client_hello("B.example.com.")
    for byte in hello[:-1]:
        reader.dataReceived(bytes([byte]))
    assert b.built == [] and a.built == []
    reader.dataReceived(hello[-1:] + b"\x17\x03\x03early")
    (addr, served), = b.built
    assert addr is CLIENT and served.transport is transport
    assert transport.protocol is served and served.data == hello + b"\x17\x03\x03early"
    assert a.built == [] and transport.value() == b""


def test_a_refusal_by_the_service_closes_without_a_byte() -> None:
    """The chosen service's own checks refuse: the connection is closed, nothing sent."""
    a = Member(("a.example.com",), admit=False)
    reader, transport = connect(port(a))
    reader.dataReceived(client_hello("a.example.com"))
    assert len(a.built) == 1 and transport.disconnecting and transport.value() == b""


def named(name: bytes) -> bytes:
    """A ClientHello carrying ``name`` as it is, however wrong."""
    return frame(with_extension(client_hello(None)[9:], server_name_extension(name)))


@pytest.mark.parametrize(("hello", "reason", "shown"), [
    (client_hello("c.example.com"), "unknown server name", "c.example.com"),
    (client_hello(None), "no server name", ""),
    (named(b"1.2.3.4"), "invalid server name", "1.2.3.4"),
    (named(b"a.example.com\x00.evil"), "invalid server name", "a.example.com\\x00.evil"),
    (named(b"x" * 300), "invalid server name", "x" * 100),
])
def test_no_service_for_the_name_is_an_alert(hello: bytes, reason: str, shown: str,
                                             log_events: list[dict[str, Any]]) -> None:
    """Without a default, a name nobody routes gets unrecognized_name, logged by the
    port with the name escaped and cut short."""
    reader, transport = connect(port(Member(("a.example.com",))))
    reader.dataReceived(hello)
    assert transport.value() == alert(112, hello[1:3]) and transport.disconnecting
    (event,) = refusals(log_events)
    assert (event["reason"], event["server_name"], event["peer_host"], event["where"]) == (
        reason, shown, "10.1.2.3", "127.0.0.1:443")


def test_the_default_takes_unknown_and_missing_names() -> None:
    """With a default, no name and an unknown one go to it."""
    default = Member()
    shared = port(Member(("a.example.com",)), default)
    for name in (None, "c.example.com"):
        reader, _ = connect(shared)
        reader.dataReceived(client_hello(name))
    assert len(default.built) == 2


def test_garbage_and_oversize_are_closed(log_events: list[dict[str, Any]]) -> None:
    """Plain text, or more than MAX_BUFFERED bytes without a ClientHello: closed, no alert."""
    reader, transport = connect(port(Member()))
    reader.dataReceived(b"GET / HTTP/1.0\r\n\r\n")
    assert transport.disconnecting and transport.value() == b""
    reader, transport = connect(port(Member()))
    reader.dataReceived(b"\x16\x03\x01\x40\x00\x01\x00\x3f\xf0")  # a 16 KiB record coming
    for _ in range(MAX_BUFFERED // 1000 + 1):
        reader.dataReceived(b"\x00" * 1000)
    assert transport.disconnecting
    assert [e["reason"] for e in refusals(log_events)] == ["malformed ClientHello"] * 2


def test_silence_is_cut_at_the_shortest_timeout(log_events: list[dict[str, Any]]) -> None:
    """The ClientHello must come within the shortest tls_handshake_timeout of the port."""
    shared = port(Member(("a.example.com",), hello_timeout=7), Member(hello_timeout=3))
    reader, transport = connect(shared)
    reader.dataReceived(client_hello("a.example.com")[:20])
    shared.reactor.advance(2.9)
    assert not transport.disconnecting
    shared.reactor.advance(0.2)
    assert transport.disconnecting
    assert [e["reason"] for e in refusals(log_events)] == ["no ClientHello"]
    assert shared.reactor.getDelayedCalls() == []


def test_a_flood_of_refusals_is_counted_not_logged(log_events: list[dict[str, Any]]) -> None:
    """REFUSAL_BURST events per source and reason each window, then one with the count."""
    shared = port(Member(("a.example.com",)))
    for _ in range(REFUSAL_BURST + 3):
        reader, _ = connect(shared)
        reader.dataReceived(client_hello("c.example.com"))
    assert len(refusals(log_events)) == REFUSAL_BURST
    shared.reactor.advance(REFUSAL_WINDOW)
    reader, _ = connect(shared)
    reader.dataReceived(client_hello("c.example.com"))
    summary = refusals(log_events)[REFUSAL_BURST]
    assert (summary["count"], summary["reason"]) == (3, "unknown server name")
    assert len(refusals(log_events)) == REFUSAL_BURST + 2
