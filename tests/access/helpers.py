"""Builders and fakes shared by the access tests."""

from __future__ import annotations

from typing import Any

import attrs
from twisted.internet.address import IPv4Address, IPv6Address
from twisted.internet.error import ConnectionAborted
from twisted.internet.protocol import Protocol
from twisted.internet.testing import MemoryReactorClock, StringTransport
from twisted.python.failure import Failure

from superd.access.bandb import InlineWorker
from superd.access.resolver import NameResolver
from superd.access.state import AccessState, open_access
from superd.config.addrspec import parse_address
from superd.config.model import AddressSpec, Location, ServiceConfig, SocketType
from superd.core.runtime import Runtime, RuntimeOptions
from superd.core.session import Peer, Session
from superd.observe.counters import Counters
from superd.proc.table import ProcessTable
from tests.fakes import fake_processes


def service(**changes: Any) -> ServiceConfig:
    """A stream builtin named ``svc`` with ``changes`` applied."""
    base = ServiceConfig(
        name="svc", id="svc", location=Location("conf/svc", 1),
        socket_type=SocketType.STREAM, protocol="tcp", wait=False, port=0,
        type=frozenset({"INTERNAL"}), flags=frozenset({"NOLIBWRAP"}))
    return attrs.evolve(base, **changes)


def specs(*texts: str) -> tuple[AddressSpec, ...]:
    """``only_from``-style entries parsed by the configuration parser."""
    return tuple(spec for text in texts for spec in parse_address(text))


def make_runtime(tmp_path: Any = None, **options: Any) -> Runtime:
    """A runtime on a MemoryReactorClock (state in ``tmp_path``)."""
    if tmp_path is not None:
        options.setdefault("state_dir", str(tmp_path / "state"))
        options.setdefault("hosts_allow", str(tmp_path / "hosts.allow"))
        options.setdefault("hosts_deny", str(tmp_path / "hosts.deny"))
    return Runtime(MemoryReactorClock(), RuntimeOptions(**options))


def make_access(tmp_path: Any, *, lookups: Any = None,
                processes: ProcessTable | None = None, **options: Any) -> AccessState:
    """The daemon's access state (bans in ``tmp_path``'s state directory, its
    hosts files), started; a load average of 0; children from a fake spawner;
    names looked up by ``lookups`` if given."""
    runtime = make_runtime(tmp_path, **options)
    if processes is None:
        processes, _ = fake_processes(runtime.reactor)
    resolver = None if lookups is None else NameResolver(runtime.reactor, lookups)
    access = open_access(runtime, processes, Counters(), list, resolver=resolver,
                         load_reader=lambda: 0.0, ban_worker=InlineWorker())
    access.startService()
    return access


def address(host: str, port: int = 40000) -> IPv4Address | IPv6Address:
    """The Twisted address of a TCP peer."""
    if ":" in host:
        return IPv6Address("TCP", host, port)
    return IPv4Address("TCP", host, port)


class EndingProtocol(Protocol):
    """Serves a session and ends it when the connection is lost."""

    def __init__(self, session: Session) -> None:
        self.session = session
        self.received = b""

    def connectionMade(self) -> None:
        self.transport.write(b"served\n")  # type: ignore[union-attr]

    def dataReceived(self, data: bytes) -> None:
        self.received += data

    def connectionLost(self, reason: Failure | None = None) -> None:
        self.session.end()


class RecordingHandler:
    """An IStreamHandler/IDatagramHandler that records what it serves."""

    suppress_replies = False

    def __init__(self) -> None:
        self.sessions: list[Session] = []
        self.protocols: list[EndingProtocol] = []
        self.datagrams: list[tuple[bytes, Peer]] = []

    def protocol_for(self, session: Session) -> EndingProtocol:
        self.sessions.append(session)
        protocol = EndingProtocol(session)
        self.protocols.append(protocol)
        return protocol

    def handle_datagram(self, data: bytes, peer: Peer, reply: Any) -> None:
        self.datagrams.append((data, peer))
        reply(data)


class HalfCloseTransport(StringTransport):
    """A StringTransport that records half-closes."""

    write_closed = False
    protocol: Any = None

    def loseWriteConnection(self) -> None:
        self.write_closed = True


def connect(factory: Any, host: str,
            port: int = 40000) -> tuple[Protocol | None, HalfCloseTransport]:
    """Build a protocol for a peer and connect it to a fresh transport."""
    peer = address(host, port)
    protocol = factory.buildProtocol(peer)
    transport = HalfCloseTransport(peerAddress=peer,
                                   hostAddress=address("127.0.0.1", 7))
    if protocol is not None:
        transport.protocol = protocol
        protocol.makeConnection(transport)
    return protocol, transport


def fail_lines(events: list[dict[str, Any]]) -> list[str]:
    """The xinetd FAIL lines among logged events."""
    return [e["xinetd_line"] for e in events
            if e.get("event") == "refuse" and e.get("xinetd_line")]


class AbortableTransport(StringTransport):
    """A transport whose abortConnection loses the connection at once, as
    Twisted's TCP transport does on the next reactor turn."""

    aborted = False
    protocol: Any = None

    def abortConnection(self) -> None:
        self.aborted = True
        self.protocol.connectionLost(Failure(ConnectionAborted()))


def serve(factory: Any, host: str) -> AbortableTransport:
    """Admit a connection from ``host`` and connect the handler's protocol."""
    protocol = factory.buildProtocol(address(host))
    assert protocol is not None
    transport = AbortableTransport()
    transport.protocol = protocol
    protocol.makeConnection(transport)
    return transport

