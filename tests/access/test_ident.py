"""Tests for superd.access.ident: the RFC 1413 client behind USERID and IDONLY."""

from __future__ import annotations

from typing import Any

import attrs
import pytest
from hypothesis import given
from hypothesis import strategies as st
from twisted.internet import defer, reactor
from twisted.internet import error as neterror
from twisted.internet.protocol import Protocol, ServerFactory
from twisted.internet.testing import MemoryReactorClock, StringTransport
from twisted.logger import capturedLogs
from twisted.python.failure import Failure
from twisted.trial import unittest

from superd.access import ident
from superd.access.ident import (
    MAX_REPLY,
    IdentResult,
    escape_text,
    log_remote_user,
    lookup_user,
    parse_reply,
    wants_userid,
)
from superd.config.model import Location, ServiceConfig, SocketType
from superd.core.session import Peer
from superd.observe.events import (
    NOID_BAD_RESPONSE,
    NOID_NO_SERVER,
    NOID_RECEIVE_ERROR,
    NOID_SYSTEM_ERROR,
    NOID_TIMEOUT,
)

LOCAL = Peer("127.0.0.2", 2222)     # the address the client reached
REMOTE = Peer("127.0.0.1", 3333)    # the client


def service(flags: frozenset[str] = frozenset(), wait: bool = False,
            socket_type: SocketType = SocketType.STREAM,
            success: frozenset[str] = frozenset({"USERID"}),
            failure: frozenset[str] = frozenset()) -> ServiceConfig:
    return ServiceConfig(
        name="svc", id="svc", location=Location("t.conf", 1),
        socket_type=socket_type, protocol="tcp", wait=wait, port=0,
        flags=flags, log_on_success=success, log_on_failure=failure)


# -- pure parsing ------------------------------------------------------------------

class TestParseReply:
    @pytest.mark.parametrize(("line", "text"), [
        (b"3333,2222:USERID:UNIX:alice", "UNIX:alice"),
        (b"3333 , 2222 : USERID : UNIX : alice", "UNIX : alice"),
        (b" 3333,2222 :USERID\t:  OTHER :bob  ", "OTHER :bob  "),
        (b"3333,2222:USERID:UNIX,UTF-8:j\xc3\xb6rg", "UNIX,UTF-8:j\u00f6rg"),
    ])
    def test_accepts_xinetd_shapes(self, line: bytes, text: str) -> None:
        """Whitespace around tokens is allowed; the text after 'USERID :' is kept."""
        assert parse_reply(line, 3333, 2222) == text

    @pytest.mark.parametrize("line", [
        b"3333,2222:ERROR:NO-USER",          # ERROR replies
        b"3334,2222:USERID:UNIX:alice",      # remote port mismatch
        b"3333,2223:USERID:UNIX:alice",      # local port mismatch
        b"2222,3333:USERID:UNIX:alice",      # ports swapped
        b"3333,2222:userid:UNIX:alice",      # xinetd compares case-sensitively
        b"3333,2222:USERID:",                # empty user text
        b"3333,2222:USERID:   ",
        b"3333,2222:USERIDX:UNIX:alice",
        b"3333;2222:USERID:UNIX:alice",
        b"-3333,2222:USERID:UNIX:alice",
        b"hello world",
        b"",
    ])
    def test_rejects(self, line: bytes) -> None:
        """ERROR replies, mismatched ports and garbage are refused."""
        assert parse_reply(line, 3333, 2222) is None

    def test_escapes_control_and_invalid_bytes(self) -> None:
        """Peer bytes that could forge log lines or confuse terminals are escaped."""
        line = b"3333,2222:USERID:UNIX:ev\x1b[1mil\nSTART: x\xff"
        assert parse_reply(line, 3333, 2222) == (
            "UNIX:ev\\x1b[1mil\\x0aSTART: x\\xff")

    def test_escape_text_keeps_printable(self) -> None:
        """Printable text, non-ASCII letters included, is unchanged."""
        assert escape_text("UNIX : j\u00f6rg".encode()) == "UNIX : j\u00f6rg"
        assert escape_text(b"a\tb\x7f") == "a\\x09b\\x7f"


@given(st.binary(max_size=200), st.integers(0, 65535), st.integers(0, 65535))
def test_parse_reply_never_raises_and_text_is_safe(line: bytes, rport: int,
                                                   lport: int) -> None:
    """Any reply parses to None or to text with no control characters."""
    text = parse_reply(line, rport, lport)
    assert text is None or text.isprintable()


@given(st.text(st.characters(codec="utf-8", exclude_categories=["Cc", "Cs"]),
               min_size=1, max_size=60).filter(lambda t: t[0] not in " \t\n\x0b\x0c\r"
                                               and t.isprintable()),
       st.lists(st.integers(1, 40), max_size=10))
def test_reply_in_any_chunking(user: str, cuts: list[int]) -> None:
    """A valid reply yields its text however TCP splits it."""
    reply_bytes = b"3333 , 2222 : USERID : " + user.encode() + b"\r\n"
    r = MemoryReactorClock()
    _, results = start(r)
    protocol, _ = connect(r)
    position = 0
    for cut in cuts:
        protocol.dataReceived(reply_bytes[position:position + cut])
        position += cut
    protocol.dataReceived(reply_bytes[position:])
    assert results == [IdentResult(user_text=user)]


def test_wants_userid() -> None:
    """Only stream wait=no services look users up, per the flag of the outcome."""
    assert wants_userid(service(), admitted=True)
    assert not wants_userid(service(), admitted=False)
    assert wants_userid(service(success=frozenset(), failure=frozenset({"USERID"})),
                        admitted=False)
    assert wants_userid(service(flags=frozenset({"IDONLY"}), success=frozenset()),
                        admitted=True)
    assert not wants_userid(service(wait=True), admitted=True)
    assert not wants_userid(service(socket_type=SocketType.DGRAM), admitted=True)


def test_no_userid_for_the_ident_service_itself() -> None:
    """On port 113/tcp USERID and IDONLY are ignored: the lookup would ask itself."""
    ident_service = attrs.evolve(service(flags=frozenset({"IDONLY"}),
                                         failure=frozenset({"USERID"})), port=113)
    assert not wants_userid(ident_service, admitted=True)
    assert not wants_userid(ident_service, admitted=False)
    assert wants_userid(attrs.evolve(ident_service, port=1113), admitted=True)


# -- the client on fakes -----------------------------------------------------------

def start(clock_reactor: MemoryReactorClock, timeout: float = 30.0,
          ) -> tuple[defer.Deferred[IdentResult], list[IdentResult]]:
    d = lookup_user(clock_reactor, LOCAL, REMOTE, port=1130, timeout=timeout)
    results: list[IdentResult] = []
    d.addCallback(results.append)
    return d, results


def connect(clock_reactor: MemoryReactorClock) -> tuple[Any, StringTransport]:
    factory = clock_reactor.tcpClients[0][2]
    protocol: Any = factory.buildProtocol(None)
    transport = StringTransport()
    protocol.makeConnection(transport)
    return protocol, transport


class TestClientOnFakes:
    def test_connects_from_local_address_to_ident_port(self) -> None:
        """The lookup connects from the reached address to the peer's ident port."""
        r = MemoryReactorClock()
        start(r, timeout=7)
        host, port, _factory, timeout, bind = r.tcpClients[0]
        assert (host, port, timeout) == ("127.0.0.1", 1130, 7)
        assert bind == ("127.0.0.2", 0)  # type: ignore[comparison-overlap]

    def test_query_and_answer(self) -> None:
        """It sends '<rport>,<lport>\\r\\n' and returns the text of the reply."""
        r = MemoryReactorClock()
        _, results = start(r)
        protocol, transport = connect(r)
        assert transport.value() == b"3333,2222\r\n"
        protocol.dataReceived(b"3333 , 2222 : USERID : UNIX : al")
        assert results == []
        protocol.dataReceived(b"ice\r\n")
        assert results == [IdentResult(user_text="UNIX : alice")]
        assert transport.disconnecting

    def test_timeout_while_connecting(self) -> None:
        """No connection within the timeout: NOID reason 'timeout'."""
        r = MemoryReactorClock()
        _, results = start(r, timeout=30)
        r.advance(29.9)
        assert results == []
        r.advance(0.1)
        assert [x.reason for x in results] == [NOID_TIMEOUT]
        assert r.tcpClients[0][2] is not None and not r.getDelayedCalls()

    def test_timeout_while_waiting_for_reply(self) -> None:
        """A responder that never answers is aborted at the timeout."""
        r = MemoryReactorClock()
        _, results = start(r, timeout=5)
        _protocol, transport = connect(r)
        r.advance(5)
        assert [x.reason for x in results] == [NOID_TIMEOUT]
        assert transport.disconnecting

    def test_answer_cancels_timer(self) -> None:
        """After an answer no timer is left behind."""
        r = MemoryReactorClock()
        start(r)
        protocol, _transport = connect(r)
        protocol.dataReceived(b"3333,2222:USERID:UNIX:a\r\n")
        assert r.getDelayedCalls() == []

    def test_line_at_the_size_limit(self) -> None:
        """A reply of exactly 1 KiB with CRLF is read; one byte more is refused."""
        head = b"3333,2222:USERID:UNIX:"
        for extra, ok in ((0, True), (1, False)):
            r = MemoryReactorClock()
            _, results = start(r)
            protocol, _ = connect(r)
            body = head + b"a" * (MAX_REPLY - 2 - len(head) + extra)
            protocol.dataReceived(body + b"\r\n")
            assert results[0].ok is ok
            if not ok:
                assert results[0].reason == NOID_RECEIVE_ERROR

    def test_megabyte_without_newline(self) -> None:
        """A flood with no CRLF fails after 1 KiB and buffers no more than that."""
        r = MemoryReactorClock()
        _, results = start(r)
        protocol, transport = connect(r)
        protocol.dataReceived(b"x" * 1000)
        assert results == []
        protocol.dataReceived(b"x" * 1_000_000)
        assert [x.reason for x in results] == [NOID_RECEIVE_ERROR]
        assert len(protocol._buffer) <= MAX_REPLY + 1
        assert transport.disconnecting

    def test_connection_closed_before_line(self) -> None:
        """EOF before CRLF: 'error while receiving response'."""
        r = MemoryReactorClock()
        _, results = start(r)
        protocol, _ = connect(r)
        protocol.dataReceived(b"3333,2222:USERID:UNIX:alice")
        protocol.connectionLost(Failure(neterror.ConnectionDone()))
        assert [x.reason for x in results] == [NOID_RECEIVE_ERROR]

    @pytest.mark.parametrize(("exc", "reason"), [
        (neterror.ConnectionRefusedError(), NOID_NO_SERVER),
        (neterror.NoRouteError(), NOID_NO_SERVER),
        (neterror.TimeoutError(), NOID_TIMEOUT),
        (neterror.ConnectBindError(99, "Cannot assign requested address"),
         NOID_SYSTEM_ERROR),
        (RuntimeError("odd"), NOID_SYSTEM_ERROR),
    ])
    def test_connect_failures(self, exc: Exception, reason: str) -> None:
        """Connect failures map to xinetd's NOID reasons."""
        r = MemoryReactorClock()
        _, results = start(r)
        factory: Any = r.tcpClients[0][2]
        factory.clientConnectionFailed(None, Failure(exc))
        assert [x.reason for x in results] == [reason]

    def test_cancel(self) -> None:
        """Cancelling fails the Deferred with CancelledError and drops the connection."""
        r = MemoryReactorClock()
        d, _ = start(r)
        protocol, transport = connect(r)
        d.cancel()
        assert transport.disconnecting
        assert r.getDelayedCalls() == []
        failures: list[Failure] = []
        d.addErrback(failures.append)
        assert failures[0].check(defer.CancelledError)
        protocol.dataReceived(b"3333,2222:USERID:UNIX:a\r\n")  # ignored

    def test_wildcard_local_address_not_bound(self) -> None:
        """Without a specific local address the socket is not bound."""
        r = MemoryReactorClock()
        lookup_user(r, Peer("0.0.0.0", 2222), REMOTE)
        assert r.tcpClients[0][4] is None


# -- logging -------------------------------------------------------------------------

class TestLogRemoteUser:
    def run(self, svc: ServiceConfig, reply: bytes | None
            ) -> tuple[list[IdentResult], list[dict[str, Any]]]:
        r = MemoryReactorClock()
        results: list[IdentResult] = []
        with capturedLogs() as events:
            log_remote_user(r, svc, LOCAL, REMOTE, port=1130).addCallback(
                results.append)
            if reply is None:
                r.advance(ident.DEFAULT_TIMEOUT)
            else:
                protocol, _ = connect(r)
                protocol.dataReceived(reply)
        return results, [dict(e) for e in events]

    def test_userid_line(self) -> None:
        """Success logs 'USERID: <id> <text>' as the event's xinetd line."""
        results, events = self.run(service(), b"3333,2222:USERID:UNIX : alice\r\n")
        assert results[0].ok
        lines = [e["xinetd_line"] for e in events if e.get("event") == "userid"]
        assert lines == ["USERID: svc UNIX : alice"]

    def test_failure_without_idonly_has_no_noid(self) -> None:
        """Without IDONLY a failure is only a main-log event."""
        _, events = self.run(service(), b"3333,2222:ERROR:NO-USER\r\n")
        assert [e.get("event") for e in events] == ["ident_failed"]
        assert events[0]["reason"] == NOID_BAD_RESPONSE
        assert "NO-USER" in events[0]["detail"]
        assert "xinetd_line" not in events[0]

    def test_idonly_failure_logs_noid(self) -> None:
        """IDONLY: a failed lookup logs 'NOID: <id> <addr> <reason>'."""
        results, events = self.run(service(flags=frozenset({"IDONLY"})), None)
        assert not results[0].ok
        lines = [e["xinetd_line"] for e in events if e.get("event") == "noid"]
        assert lines == ["NOID: svc 127.0.0.1 timeout"]

    def test_missing_address(self) -> None:
        """A connection with no address is 'system error' without any I/O."""
        r = MemoryReactorClock()
        results: list[IdentResult] = []
        with capturedLogs():
            log_remote_user(r, service(), None, REMOTE).addCallback(results.append)
        assert results[0].reason == NOID_SYSTEM_ERROR
        assert r.tcpClients == []


# -- against a responder on a loopback port ------------------------------------------

class Responder(Protocol):
    """A scripted identd: records the query, answers as told."""

    def connectionMade(self) -> None:
        factory: Any = self.factory
        transport: Any = self.transport
        factory.peers.append(transport.getPeer().host)
        self.lost: defer.Deferred[None] = defer.Deferred()
        factory.lost.append(self.lost)
        self.received = b""

    def dataReceived(self, data: bytes) -> None:
        factory: Any = self.factory
        self.received += data
        if b"\r\n" in self.received:
            factory.queries.append(self.received)
            factory.answer(self, self.received)

    def connectionLost(self, reason: Failure = neterror.ConnectionDone) -> None:  # type: ignore[assignment]
        self.lost.callback(None)


class ResponderFactory(ServerFactory):
    protocol = Responder

    def __init__(self, answer: Any) -> None:
        self.answer = answer
        self.peers: list[str] = []
        self.queries: list[bytes] = []
        self.lost: list[defer.Deferred[None]] = []


def reply(data: bytes, close: bool = False) -> Any:
    def answer(protocol: Protocol, query: bytes) -> None:
        transport: Any = protocol.transport
        transport.write(data)
        if close:
            transport.loseConnection()
    return answer


def silent(protocol: Protocol, query: bytes) -> None:
    """Never answer."""


class TestAgainstLoopbackResponder(unittest.TestCase):
    """Real sockets on 127.0.0.1: a responder started by each test."""

    timeout = 10

    def listen(self, answer: Any) -> tuple[ResponderFactory, int]:
        factory = ResponderFactory(answer)
        port: Any = reactor.listenTCP(0, factory, interface="127.0.0.1")
        self.addCleanup(port.stopListening)
        return factory, port.getHost().port

    @defer.inlineCallbacks
    def lookup(self, answer: Any, timeout: float = 5.0,
               local: Peer = LOCAL) -> Any:
        factory, port = self.listen(answer)
        result = yield lookup_user(reactor, local, REMOTE, port=port,
                                   timeout=timeout)
        yield defer.gatherResults(factory.lost)   # the server saw us go
        return result, factory

    @defer.inlineCallbacks
    def test_success_from_the_reached_address(self) -> Any:
        """A USERID reply gives its text; the query came from the local address."""
        result, factory = yield self.lookup(
            reply(b"3333 , 2222 : USERID : UNIX : alice\r\n"))
        assert result == IdentResult(user_text="UNIX : alice")
        assert factory.queries == [b"3333,2222\r\n"]
        assert factory.peers == ["127.0.0.2"]

    @defer.inlineCallbacks
    def test_error_reply(self) -> Any:
        """An ERROR reply is 'bad response'."""
        result, _ = yield self.lookup(reply(b"3333,2222:ERROR:NO-USER\r\n"))
        assert result.reason == NOID_BAD_RESPONSE

    @defer.inlineCallbacks
    def test_mismatched_ports(self) -> Any:
        """A reply about other ports is 'bad response'."""
        result, _ = yield self.lookup(reply(b"4444,2222:USERID:UNIX:mallory\r\n"))
        assert result.reason == NOID_BAD_RESPONSE

    @defer.inlineCallbacks
    def test_garbage(self) -> Any:
        """Binary garbage ending in CRLF is 'bad response', escaped in the detail."""
        result, _ = yield self.lookup(reply(b"\x00\xff\x1b]0;pwned\x07\r\n"))
        assert result.reason == NOID_BAD_RESPONSE
        assert "\x1b" not in result.detail and "\\x1b" in result.detail

    @defer.inlineCallbacks
    def test_no_newline_within_1k(self) -> Any:
        """2 KiB without CRLF (connection kept open): 'error while receiving response'."""
        result, _ = yield self.lookup(reply(b"z" * 2048))
        assert result.reason == NOID_RECEIVE_ERROR

    @defer.inlineCallbacks
    def test_megabyte(self) -> Any:
        """A 1 MB answer is cut off, not buffered."""
        result, _ = yield self.lookup(reply(b"z" * 1_000_000))
        assert result.reason == NOID_RECEIVE_ERROR

    @defer.inlineCallbacks
    def test_closed_without_crlf(self) -> Any:
        """A reply without CRLF followed by close: 'error while receiving response'."""
        result, _ = yield self.lookup(
            reply(b"3333,2222:USERID:UNIX:alice", close=True))
        assert result.reason == NOID_RECEIVE_ERROR

    @defer.inlineCallbacks
    def test_timeout(self) -> Any:
        """A responder that never answers gives 'timeout' after the timeout."""
        started = reactor.seconds()
        result, _ = yield self.lookup(silent, timeout=0.3)
        assert result.reason == NOID_TIMEOUT
        assert 0.25 <= reactor.seconds() - started < 3

    @defer.inlineCallbacks
    def test_connection_refused(self) -> Any:
        """Nobody listening on the ident port: 'no server'."""
        port: Any = reactor.listenTCP(0, ServerFactory(), interface="127.0.0.1")
        number = port.getHost().port
        yield port.stopListening()
        result = yield lookup_user(reactor, LOCAL, REMOTE, port=number, timeout=5)
        assert result.reason == NOID_NO_SERVER

    @defer.inlineCallbacks
    def test_unbindable_local_address(self) -> Any:
        """A local address we cannot bind (not ours) is 'system error'."""
        result = yield lookup_user(reactor, Peer("192.0.2.1", 2222), REMOTE,
                                   port=1, timeout=5)
        assert result.reason == NOID_SYSTEM_ERROR

    @defer.inlineCallbacks
    def test_slow_responder_blocks_nobody(self) -> Any:
        """A lookup stuck on a silent identd does not delay another lookup."""
        slow_factory, slow_port = self.listen(silent)
        stuck = lookup_user(reactor, LOCAL, REMOTE, port=slow_port, timeout=5)
        quick = yield self.lookup(reply(b"3333,2222:USERID:UNIX:bob\r\n"))
        assert quick[0].user_text == "UNIX:bob"
        assert not stuck.called
        stuck.cancel()
        stuck.addErrback(lambda f: f.trap(defer.CancelledError))
        yield defer.gatherResults(slow_factory.lost)

    @defer.inlineCallbacks
    def test_ipv6(self) -> Any:
        """Lookups work over IPv6 loopback, bound to the reached address."""
        factory = ResponderFactory(reply(b"3333,2222:USERID:UNIX:v6\r\n"))
        port: Any = reactor.listenTCP(0, factory, interface="::1")
        self.addCleanup(port.stopListening)
        result = yield lookup_user(reactor, Peer("::1", 2222), Peer("::1", 3333),
                                   port=port.getHost().port, timeout=5)
        yield defer.gatherResults(factory.lost)
        assert result.user_text == "UNIX:v6"
        assert factory.peers == ["::1"]
