"""
superd.daemon.scrapes with a memory clock and string transports: only a
bodiless GET or HEAD is served, anything else is answered at once without
reading on; every connection ends by the deadline however it trickles; the
head is bounded; and the connection limits give way to a scrape by dropping
the client that has been slowest to send its request.
"""

from __future__ import annotations

from typing import Any

import pytest
from twisted.internet.address import IPv4Address
from twisted.internet.error import ConnectionDone
from twisted.internet.testing import MemoryReactorClock, StringTransport
from twisted.python.failure import Failure
from twisted.web.resource import Resource

from superd.daemon import scrapes
from superd.daemon.scrapes import DEADLINE, MAX_HEAD, ScrapeChannel, ScrapeSite

SCRAPE = b"GET /metrics HTTP/1.1\r\nHost: x\r\nAccept: text/plain\r\n\r\n"


class Metrics(Resource):
    isLeaf = True

    def render_GET(self, request: Any) -> bytes:
        return b"superd_up 1\n"


def make_site() -> tuple[ScrapeSite, MemoryReactorClock]:
    clock = MemoryReactorClock()
    root = Resource()
    root.putChild(b"metrics", Metrics())
    return ScrapeSite(root, clock), clock


def connect(site: ScrapeSite, source: str = "127.0.0.1",
            port: int = 5000) -> tuple[ScrapeChannel, StringTransport]:
    channel = site.buildProtocol(IPv4Address("TCP", source, port))
    assert channel is not None
    transport = StringTransport()
    channel.makeConnection(transport)
    return channel, transport


def test_get_is_answered_once_and_closed() -> None:
    """A scrape gets 200 with the body and Connection: close, then the close."""
    site, _ = make_site()
    channel, transport = connect(site)
    channel.dataReceived(SCRAPE)
    reply = transport.value()
    assert reply.startswith(b"HTTP/1.1 200 ")
    assert b"\r\nConnection: close\r\n" in reply and reply.endswith(b"\r\n\r\nsuperd_up 1\n")
    assert transport.disconnecting


def test_head_has_no_body() -> None:
    site, _ = make_site()
    channel, transport = connect(site)
    channel.dataReceived(b"HEAD /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
    reply = transport.value()
    assert reply.startswith(b"HTTP/1.1 200 ") and reply.endswith(b"\r\n\r\n")


def test_a_content_length_of_zero_is_no_body() -> None:
    """Some clients say Content-Length: 0 on a GET: that is still a scrape."""
    site, _ = make_site()
    channel, transport = connect(site)
    channel.dataReceived(b"GET /metrics HTTP/1.1\r\nContent-Length: 0\r\n\r\n")
    assert transport.value().startswith(b"HTTP/1.1 200 ")


@pytest.mark.parametrize("method", [b"POST", b"PUT", b"DELETE", b"OPTIONS", b"get", b""])
def test_other_methods_are_refused_at_the_request_line(method: bytes) -> None:
    """405 with Allow as soon as the request line is in; the headers that
    follow in the same read are not looked at."""
    site, _ = make_site()
    channel, transport = connect(site)
    channel.dataReceived(method + b" /metrics HTTP/1.1\r\nContent-Length: 9\r\n\r\nsomething")
    assert transport.value() == (b"HTTP/1.1 405 Method Not Allowed\r\nAllow: GET, HEAD\r\n"
                                 b"Content-Length: 0\r\nConnection: close\r\n\r\n")
    assert transport.disconnecting and not channel.requests


@pytest.mark.parametrize("header", [b"Content-Length: 50000000000",
                                    b"content-length:1",
                                    b"Transfer-Encoding: chunked",
                                    b"Transfer-Encoding: identity"])
def test_a_request_body_is_refused_before_it_is_read(header: bytes,
                                                     monkeypatch: Any) -> None:
    """413 as soon as the header announcing a body is in: no request is
    started, so nothing is spooled (no temporary file is ever made)."""
    import tempfile

    made: list[Any] = []
    monkeypatch.setattr(tempfile, "TemporaryFile", lambda *a, **k: made.append(a))
    site, _ = make_site()
    channel, transport = connect(site)
    channel.dataReceived(b"GET /metrics HTTP/1.1\r\n" + header + b"\r\nHost: x\r\n\r\n"
                         + b"x" * 65536)
    assert transport.value().startswith(b"HTTP/1.1 413 Content Too Large\r\n")
    assert transport.disconnecting and not channel.requested and not made


def test_a_trickling_request_is_cut_at_the_deadline() -> None:
    """One byte every 2 s keeps twisted.web's idle timeout away for ever; the
    deadline aborts the connection anyway."""
    site, clock = make_site()
    channel, transport = connect(site)
    for byte in SCRAPE[:int(DEADLINE // 2)]:
        channel.dataReceived(bytes([byte]))
        clock.advance(2)
        assert not transport.disconnecting
    clock.advance(DEADLINE % 2 or 2)
    assert transport.disconnected  # StringTransport's abortConnection


def test_the_deadline_is_cancelled_when_the_connection_ends() -> None:
    site, clock = make_site()
    channel, transport = connect(site)
    channel.dataReceived(SCRAPE)
    channel.connectionLost(Failure(ConnectionDone()))
    assert not clock.getDelayedCalls()


def test_an_oversized_head_is_refused() -> None:
    """Past MAX_HEAD bytes of headers: 400 and closed, nothing served."""
    site, _ = make_site()
    channel, transport = connect(site)
    channel.dataReceived(b"GET /metrics HTTP/1.1\r\n")
    sent = 0
    while not transport.disconnecting:
        channel.dataReceived(b"X-%d: " % sent + b"a" * 1000 + b"\r\n")
        sent += 1
    assert transport.value().startswith(b"HTTP/1.1 400 ")
    assert sent == MAX_HEAD // 1000 + 1 and not channel.requested


def test_a_source_over_its_limit_replaces_its_own_slowest(monkeypatch: Any) -> None:
    """The newcomer from an address at its limit takes the place of that
    address's oldest unfinished request; other addresses are not touched."""
    monkeypatch.setattr(scrapes, "MAX_PER_SOURCE", 2)
    site, _ = make_site()
    other, other_transport = connect(site, "127.0.0.9")
    slow = [connect(site, "127.0.0.2", port) for port in (1, 2)]
    scrape, transport = connect(site, "127.0.0.2", 3)
    assert slow[0][1].disconnected and not slow[1][1].disconnecting
    assert not other_transport.disconnecting
    scrape.dataReceived(SCRAPE)
    assert transport.value().startswith(b"HTTP/1.1 200 ")


def test_all_slots_taken_the_slowest_gives_way(monkeypatch: Any) -> None:
    """At MAX_CLIENTS a newcomer takes the place of the oldest connection
    still sending its request, whoever it is; connections being answered
    keep theirs."""
    monkeypatch.setattr(scrapes, "MAX_CLIENTS", 3)
    site, _ = make_site()
    answering, answering_transport = connect(site, "127.0.0.2")
    answering.dataReceived(SCRAPE)
    held = [connect(site, f"127.0.0.{n}") for n in (3, 4)]
    newcomer = site.buildProtocol(IPv4Address("TCP", "127.0.0.1", 9))
    assert newcomer is not None
    assert held[0][1].disconnected and not held[1][1].disconnecting
    assert not answering_transport.disconnected


def test_refused_only_when_every_slot_is_being_answered(monkeypatch: Any) -> None:
    """Nothing to replace: the newcomer is refused, and a closed connection
    frees its slot."""
    monkeypatch.setattr(scrapes, "MAX_CLIENTS", 2)
    site, _ = make_site()
    channels = [connect(site, f"127.0.0.{n}")[0] for n in (2, 3)]
    for channel in channels:
        channel.dataReceived(SCRAPE)
    assert site.buildProtocol(IPv4Address("TCP", "127.0.0.1", 9)) is None
    channels[0].connectionLost(Failure(ConnectionDone()))
    assert site.buildProtocol(IPv4Address("TCP", "127.0.0.1", 9)) is not None


def test_an_endless_line_is_dropped() -> None:
    """A request line that never ends is not buffered past MAX_HEAD bytes."""
    site, _ = make_site()
    channel, transport = connect(site)
    channel.dataReceived(b"GET /" + b"a" * MAX_HEAD)
    assert transport.disconnecting and not channel.requested
