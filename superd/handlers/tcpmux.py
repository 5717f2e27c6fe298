"""
The ``tcpmux`` builtin (RFC 1078): one port, many services chosen by name.

A client sends one line naming a service (CRLF or LF, at most
``MAX_LINE`` bytes, within ``LINE_TIMEOUT`` seconds).  ``HELP`` lists the
``type = TCPMUX``/``TCPMUXPLUS`` services, one per line.  A name (matched
without regard to case) selects that service: its own access checks run for
the peer (FAIL lines under its id), then its own handler serves the
connection -- a builtin, a user protocol, or a spawned server with its own
credentials.  ``TCPMUXPLUS`` services are announced with ``+Go\\r\\n``; an
unknown name gets ``-Service name not found\\r\\n``.  Unlike xinetd no NUL
follows either reply, and no byte after the line is lost: on a plain TCP
connection the line is read with
``MSG_PEEK`` so the kernel still holds everything after it for the
selected server, even one that is handed the socket itself; under TLS the
rest of the decrypted data is passed to the selected protocol.
"""

from __future__ import annotations

import socket
from typing import Any, Callable, Dict, Iterable, Optional, Tuple

from twisted.internet.address import IPv4Address, IPv6Address
from twisted.internet.interfaces import IReadDescriptor
from twisted.internet.protocol import Protocol, connectionDone
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from superd.config.model import ServiceConfig
from superd.core import twistedprivate
from superd.core.interfaces import IStreamHandler
from superd.core.runtime import Runtime
from superd.core.session import Peer, Session
from superd.observe import events

__all__ = ["LINE_TIMEOUT", "MAX_LINE", "LinePeeker", "TcpmuxHandler", "TcpmuxProtocol"]

_log = Logger(namespace="superd.tcpmux")

#: Longest first line accepted (RFC 1078 names are short; xinetd reads 1024).
MAX_LINE = 1024
#: Seconds a client has to send its line.
LINE_TIMEOUT = 30.0

GO = b"+Go\r\n"
NOT_FOUND = b"-Service name not found\r\n"


@implementer(IReadDescriptor)
class LinePeeker:
    """
    Reads exactly one line from a socket, never a byte past its newline.

    Each wake-up peeks at what is queued: without a newline it is all part
    of the line and is consumed; with one, only the bytes up to and
    including it are.  So the reactor is never woken for data left queued,
    and memory is bounded by ``MAX_LINE``.
    """

    def __init__(self, sock: socket.socket, done: Callable[[Optional[bytes]], None],
                 writer: Any = None) -> None:
        self.sock = sock
        self._done = done
        self._writer = writer
        self._line = b""

    def fileno(self) -> int:
        return self.sock.fileno()

    def logPrefix(self) -> str:
        return "tcpmux"

    def doWrite(self) -> Any:
        # epoll keeps one object per descriptor: while the peeker reads, the
        # connection may still be writing (a banner), so writes go to it.
        return None if self._writer is None else self._writer.doWrite()

    def doRead(self) -> Optional[Failure]:
        try:
            queued = self.sock.recv(MAX_LINE - len(self._line), socket.MSG_PEEK)
        except BlockingIOError:
            return None
        except OSError:
            self._done(None)
            return None
        end = queued.find(b"\n")
        take = len(queued) if end < 0 else end + 1
        self._line += self.sock.recv(take) if take else b""
        if not queued:
            self._done(None)  # EOF before a whole line
        elif end >= 0:
            self._done(self._line)
        elif len(self._line) >= MAX_LINE:
            self._done(None)
        return None

    def connectionLost(self, reason: Failure) -> None:
        self._done(None)


def _name_of(line: bytes) -> str:
    return line.rstrip(b"\r\n").decode("ascii", "replace").strip()


def _address(peer: Optional[Peer]) -> Any:
    if peer is None:
        return None
    kind = IPv6Address if ":" in peer.host else IPv4Address
    return kind("TCP", peer.host, peer.port)


def _raw_transport(transport: Any) -> Any:
    from superd.handlers.spawn.handoff import raw_tcp_transport

    return raw_tcp_transport(transport)


class TcpmuxProtocol(Protocol):
    """Reads the service line of one tcpmux connection and hands it over."""

    transport: Any = None

    def __init__(self, handler: "TcpmuxHandler", session: Session) -> None:
        self.handler = handler
        self.session = session
        self._buffer = b""
        self._peeker: Optional[LinePeeker] = None
        self._raw: Any = None
        self._timer: Any = None
        self._finished = False

    @property
    def reactor(self) -> Any:
        return self.handler.runtime.reactor

    def connectionMade(self) -> None:
        self._timer = self.reactor.callLater(LINE_TIMEOUT, self._timed_out)
        self._raw = _raw_transport(self.transport)
        if self._raw is not None:
            # Plain TCP: read the line ourselves so nothing after it is taken.
            self._raw.stopReading()
            self._peeker = LinePeeker(self._raw.getHandle(), self._line_peeked, self._raw)
            self.reactor.addReader(self._peeker)

    def _stop_peeking(self) -> None:
        if self._peeker is not None:
            self.reactor.removeReader(self._peeker)
            self._peeker = None

    def _line_peeked(self, line: Optional[bytes]) -> None:
        self._stop_peeking()
        if line is None:
            self._refuse(None)
        else:
            self._line_read(line, b"")

    def dataReceived(self, data: bytes) -> None:
        if self._finished:
            return
        self._buffer += data
        end = self._buffer.find(b"\n")
        if end >= 0:
            line, rest = self._buffer[:end + 1], self._buffer[end + 1:]
            self._buffer = b""
            self._line_read(line, rest)
        elif len(self._buffer) >= MAX_LINE:
            self._buffer = b""
            self._refuse(None)

    def _timed_out(self) -> None:
        self._timer = None
        self._stop_peeking()
        if not self._finished:
            self._finished = True
            self.transport.abortConnection()

    def _line_read(self, line: bytes, rest: bytes) -> None:
        self._finished = True
        self._cancel_timer()
        name = _name_of(line)
        if name.upper() == "HELP":
            self._reply_and_close(b"".join(n.encode() + b"\r\n" for n in self.handler.names()))
            return
        entry = self.handler.lookup(name)
        if entry is None:
            _log.info("{service_id}: no tcpmux service {name!r} for {peer_host}",
                      event=events.EV_TCPMUX_UNKNOWN, service_id=self.handler.service.id,
                      name=name[:64], peer_host=self.session.peer.host
                      if self.session.peer else None)
            self._reply_and_close(NOT_FOUND)
            return
        self._select(entry, rest)

    def _select(self, entry: Tuple[ServiceConfig, Any], rest: bytes) -> None:
        client, factory = entry
        address, origin = _address(self.session.peer), self.session.origin
        # Behind a load balancer the selected service's session learns
        # what the tcpmux service's PROXY header said.
        protocol = (factory.buildProtocol(address) if origin is None
                    else factory.buildProtocol(address, origin))
        if protocol is None:  # refused by the client service's own rules (logged there)
            self._reply_and_close(b"")
            return
        if "TCPMUXPLUS" in client.type:
            self.transport.write(GO)
        self._hand_over(protocol, rest)

    def _hand_over(self, protocol: Any, rest: bytes) -> None:
        transport = self.transport
        twistedprivate.switch_protocol(transport, protocol)
        # The tcpmux session ends here; the selected service counts its own.
        self.session.end()
        if self._raw is not None:
            # Before connectionMade, as the access gate does: the protocol may
            # pause or hand the socket off there; nothing is read until we return.
            self._raw.startReading()
        protocol.makeConnection(transport)
        if rest:
            protocol.dataReceived(rest)

    def _refuse(self, reply: Optional[bytes]) -> None:
        self._finished = True
        self._cancel_timer()
        self._reply_and_close(reply or b"")

    def _reply_and_close(self, reply: bytes) -> None:
        if reply:
            self.transport.write(reply)
        self.transport.loseConnection()

    def _cancel_timer(self) -> None:
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self._timer = None

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        self._cancel_timer()
        self._stop_peeking()
        self.session.end()


@implementer(IStreamHandler)
class TcpmuxHandler:
    """The ``tcpmux`` service: its client services, each behind its own access checks."""

    def __init__(self, service: ServiceConfig, runtime: Runtime,
                 clients: Iterable[Tuple[ServiceConfig, Any]]) -> None:
        """``clients``: each client service with the access-controlled factory
        that serves it (the assembly builds them as for any service)."""
        self.service = service
        self.runtime = runtime
        self._clients: Dict[str, Tuple[ServiceConfig, Any]] = {}
        for client, factory in clients:
            self._clients.setdefault(client.name.lower(), (client, factory))

    def names(self) -> list[str]:
        """The service names HELP lists."""
        return [client.name for client, _ in self._clients.values()]

    def lookup(self, name: str) -> Optional[Tuple[ServiceConfig, Any]]:
        """The client service called ``name`` (any case) and its access factory."""
        return self._clients.get(name.lower())

    def protocol_for(self, session: Session) -> TcpmuxProtocol:
        """Reads the line of ``session``'s connection (START is the selected service's)."""
        return TcpmuxProtocol(self, session)

    def __repr__(self) -> str:
        return f"<TcpmuxHandler {self.service.id} {sorted(self._clients)}>"
