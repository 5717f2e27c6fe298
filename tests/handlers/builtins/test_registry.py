"""Tests for superd.handlers.builtins.registry: the builtin table and its handlers."""

from __future__ import annotations

import pytest
from twisted.internet.testing import EventLoggingObserver, StringTransport
from zope.interface.verify import verifyObject

from superd.config.builtins import BUILTIN_NAMES, is_builtin
from superd.config.model import SocketType
from superd.core.interfaces import IDatagramHandler, IStreamHandler
from superd.core.session import Peer
from superd.handlers.builtins.chargen import ChargenStream, chargen_line
from superd.handlers.builtins.clock import DaytimeStream, TimeStream
from superd.handlers.builtins.discard import DiscardStream
from superd.handlers.builtins.echo import EchoStream
from superd.handlers.builtins.registry import (
    DATAGRAM_BUILTINS,
    STREAM_BUILTINS,
    datagram_handler,
    stream_handler,
)
from superd.observe.events import EV_EXIT, EV_START
from tests.handlers.builtins.conftest import make_runtime, make_service, make_session, named

FIVE = ("echo", "discard", "chargen", "daytime", "time")


@pytest.mark.parametrize("name", FIVE)
@pytest.mark.parametrize("socket_type", [SocketType.STREAM, SocketType.DGRAM])
def test_five_builtins_on_both_socket_types(name: str, socket_type: SocketType) -> None:
    """echo, discard, chargen, daytime and time are builtins for stream and dgram."""
    assert is_builtin(name, socket_type)


def test_tcpmux_is_a_stream_builtin_only() -> None:
    """tcpmux is recognised for stream (so its services load) and not for dgram."""
    assert is_builtin("tcpmux", SocketType.STREAM)
    assert not is_builtin("tcpmux", SocketType.DGRAM)


def test_every_builtin_name_has_a_handler() -> None:
    """The configuration's table of builtin names and this handler table agree
    (tcpmux, a builtin name, is served by superd.handlers.tcpmux)."""
    served = ({(name, SocketType.STREAM) for name in STREAM_BUILTINS}
              | {(name, SocketType.DGRAM) for name in DATAGRAM_BUILTINS}
              | {("tcpmux", SocketType.STREAM)})
    assert served == BUILTIN_NAMES


@pytest.mark.parametrize(("name", "socket_type"), [
    ("ssh", SocketType.STREAM), ("echo", SocketType.RAW), ("Echo", SocketType.STREAM),
    ("servers", SocketType.STREAM), ("services", SocketType.STREAM), ("", SocketType.DGRAM),
])
def test_other_names_are_not_builtins(name: str, socket_type: SocketType) -> None:
    """Names xinetd removed, other socket types and case variants are not builtins."""
    assert not is_builtin(name, socket_type)


@pytest.mark.parametrize(("name", "protocol_class"), [
    ("echo", EchoStream), ("discard", DiscardStream), ("chargen", ChargenStream),
    ("daytime", DaytimeStream), ("time", TimeStream),
])
def test_stream_handler_builds_the_right_protocol(name: str, protocol_class: type) -> None:
    """Each stream handler is an IStreamHandler whose protocol serves that RFC."""
    runtime = make_runtime()
    handler = stream_handler(make_service(name), runtime)
    assert verifyObject(IStreamHandler, handler)
    proto = handler.protocol_for(make_session(runtime))
    assert type(proto) is protocol_class
    assert handler.protocol_for(make_session(runtime)) is not proto


def test_stream_protocol_logs_start_and_ends_session(events: EventLoggingObserver) -> None:
    """A served connection logs START (pid 0, the peer); its loss ends the session and logs EXIT."""
    runtime = make_runtime()
    service = make_service("echo", id="echo-tcp", log_on_success=frozenset({"DURATION"}))
    handler = stream_handler(service, runtime)
    session = make_session(runtime, "echo-tcp", Peer("127.0.0.3", 5000))
    ended: list[object] = []
    session.on_end(ended.append)
    proto = handler.protocol_for(session)
    proto.makeConnection(StringTransport())
    (start,) = named(events, EV_START)
    assert (start["service_id"], start["pid"], start["peer_host"]) == ("echo-tcp", 0, "127.0.0.3")
    runtime.reactor.advance(5)
    proto.connectionLost()
    assert ended == [session]
    (exit_event,) = named(events, EV_EXIT)
    assert exit_event["duration"] == 5 and exit_event["status"] == 0


def test_no_exit_event_unless_asked(events: EventLoggingObserver) -> None:
    """Without EXIT/DURATION in log_on_success, echo logs no EXIT (a per-connection cost)."""
    runtime = make_runtime()
    proto = stream_handler(make_service("echo"), runtime).protocol_for(make_session(runtime))
    proto.makeConnection(StringTransport())
    proto.connectionLost()
    assert proto.session.ended
    assert len(named(events, EV_START)) == 1
    assert named(events, EV_EXIT) == []


def test_daytime_and_time_log_no_exit(events: EventLoggingObserver) -> None:
    """As in xinetd, the in-process daytime and time services log START but no EXIT."""
    runtime = make_runtime()
    for name in ("daytime", "time"):
        service = make_service(name, log_on_success=frozenset({"EXIT", "DURATION"}))
        proto = stream_handler(service, runtime).protocol_for(make_session(runtime))
        proto.makeConnection(StringTransport())
        proto.connectionLost()
    assert len(named(events, EV_START)) == 2
    assert named(events, EV_EXIT) == []


def test_unknown_or_mismatched_builtin_is_refused() -> None:
    """No handler for an unknown name or for a name on the wrong socket type."""
    with pytest.raises(LookupError, match="'ssh'"):
        stream_handler(make_service("ssh"), make_runtime())
    with pytest.raises(LookupError, match="dgram"):
        stream_handler(make_service("echo", SocketType.DGRAM), make_runtime())
    with pytest.raises(LookupError, match="stream"):
        datagram_handler(make_service("echo"), make_runtime(), frozenset())


@pytest.mark.parametrize("name", FIVE)
def test_datagram_handler_provides_interface(name: str) -> None:
    """Each datagram handler is a verified IDatagramHandler; only discard suppresses replies."""
    handler = datagram_handler(make_service(name, SocketType.DGRAM), make_runtime(), frozenset())
    assert verifyObject(IDatagramHandler, handler)
    assert handler.suppress_replies is (name == "discard")


def test_datagram_replies_by_name() -> None:
    """Each datagram builtin answers with its own bytes from the injected clock."""
    runtime = make_runtime()
    peer = Peer("127.0.0.2", 40000)
    replies = {}
    for name in FIVE:
        sent: list[bytes] = []
        handler = datagram_handler(make_service(name, SocketType.DGRAM), runtime, frozenset())
        handler.handle_datagram(b"hi", peer, sent.append)
        replies[name] = sent
    assert replies["echo"] == [b"hi"]
    assert replies["discard"] == []
    assert replies["chargen"] == [chargen_line(0)]
    assert replies["time"] == [b"\xee\xb7\x23\x19"]
    assert replies["daytime"][0].endswith(b"\r\n") and b" NOV 2026 " in replies["daytime"][0]


def test_chargen_ring_is_per_service() -> None:
    """Two dgram chargen services each start at line 0; one service's ring advances."""
    runtime, peer = make_runtime(), Peer("127.0.0.2", 40000)
    first = datagram_handler(make_service("chargen", SocketType.DGRAM), runtime, frozenset())
    second = datagram_handler(make_service("chargen", SocketType.DGRAM), runtime, frozenset())
    sent: list[bytes] = []
    first.handle_datagram(b"", peer, sent.append)
    first.handle_datagram(b"", peer, sent.append)
    second.handle_datagram(b"", peer, sent.append)
    assert sent == [chargen_line(0), chargen_line(1), chargen_line(0)]


def test_own_port_is_protected() -> None:
    """A datagram handler never replies to its own configured port (echo to echo loop)."""
    service = make_service("echo", SocketType.DGRAM, port=17007)
    handler = datagram_handler(service, make_runtime(), frozenset({17019}))
    sent: list[bytes] = []
    for port in (17007, 17019):
        handler.handle_datagram(b"loop", Peer("127.0.0.2", port), sent.append)
    assert sent == []


def test_tables_cover_the_same_five() -> None:
    """The stream and datagram tables both hold exactly the five RFC services."""
    assert set(STREAM_BUILTINS) == set(DATAGRAM_BUILTINS) == set(FIVE)
