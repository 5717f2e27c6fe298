"""
Choosing among the TLS services that share a port by the server name the
client asks for (``tls_sni``).

``SNIRouter`` serves a shared socket (``superd.net.shared``) whose services
route names.  For each connection a ``HelloReader`` reads the client's first
bytes up to the end of its ClientHello (``superd.handlers.tls.clienthello``:
bounded in size, and in time by the shortest ``tls_handshake_timeout`` of
the port's services) and looks up the server name in it: an exact
``tls_sni`` name, then a ``*.domain`` one, then the port's service without
``tls_sni``.  The connection goes to that service's access-controlled
factory -- its address lists, hosts files, ``access_times``, bans, ``cps``,
``instances`` and ``per_source``, logged under its id -- and, if admitted,
to its TLS layer, which is given the ClientHello as if it had just arrived:
the handshake, its certificate and its timeout are the chosen service's.

So every access check runs before the handshake, for the service the client
asked for: a refused client has sent its ClientHello and sees the
connection closed, with no byte from superd, as on a port of its own.
Routing happens first because the checks are the chosen service's; reading
a ClientHello costs superd no cryptography.  A server name that no service
routes on a port without a default, or no name there, gets a TLS
``unrecognized_name`` alert; a ClientHello that is malformed, too large or
late, a closed connection.  These refusals come before any service is
chosen, so they are ``sni_refused`` events of the port, not FAIL lines: the
first few per source and reason every ``REFUSAL_WINDOW`` seconds, then one
event with the count.
"""

from __future__ import annotations

from typing import Any, Dict, Optional, Sequence, Tuple

import attrs
from twisted.internet.interfaces import IAddress, IDelayedCall
from twisted.internet.protocol import Protocol, ServerFactory, connectionDone
from twisted.logger import Logger
from twisted.python.failure import Failure

from superd.config.model import ServiceConfig
from superd.config.servername import requested_name
from superd.config.text import printable
from superd.core import twistedprivate
from superd.core.runtime import Runtime
from superd.core.session import Peer
from superd.handlers.tls.clienthello import (
    MAX_HELLO,
    MAX_RECORDS,
    HelloError,
    Incomplete,
    read_client_hello,
)
from superd.net.shared import Member
from superd.observe import events

__all__ = ["REFUSAL_BURST", "REFUSAL_WINDOW", "HelloReader", "SNIRouter", "TLSRoute",
           "alert"]

_log = Logger(namespace="superd.tls")

#: The most bytes held before the ClientHello is complete.
MAX_BUFFERED = MAX_HELLO + 4 + 5 * MAX_RECORDS
#: ``sni_refused`` events logged per (source, reason) in each window.
REFUSAL_BURST = 5
REFUSAL_WINDOW = 10.0
_MAX_WINDOWS = 10_000

#: TLS alert descriptions (RFC 8446 section 6).
UNRECOGNIZED_NAME = 112


def alert(description: int, record_version: bytes = b"\x03\x03") -> bytes:
    """A fatal TLS alert record, in the clear (no key is agreed yet)."""
    return b"\x15" + record_version + b"\x00\x02\x02" + bytes([description])


@attrs.define(eq=False)
class TLSRoute:
    """One TLS service as a member of a shared socket (``superd.net.shared.Member``)."""

    service: ServiceConfig
    #: The service's access-controlled factory.
    factory: Any
    #: Its TLS handler (None: a sensor, which serves nothing).
    handler: Any = None

    @property
    def names(self) -> Tuple[str, ...]:
        """The server names routed to the service (() for the default)."""
        tls = self.service.extensions.tls
        return () if tls is None else tls.sni

    @property
    def hello_timeout(self) -> float:
        """Seconds a client of the service has for its ClientHello."""
        tls = self.service.extensions.tls
        return 10.0 if tls is None else tls.handshake_timeout

    def start(self) -> None:
        if self.handler is not None:
            self.handler.start()

    def stop(self) -> None:
        if self.handler is not None:
            self.handler.stop()


class _Refusals:
    """Counts ``sni_refused`` per (source, reason) so that a flood is not a log flood."""

    def __init__(self) -> None:
        self._windows: Dict[Tuple[str, str], list[float]] = {}

    def should_log(self, key: Tuple[str, str], now: float) -> bool:
        window = self._windows.get(key)
        if window is None or not 0 <= now - window[0] < REFUSAL_WINDOW:
            if window is not None and window[2]:
                _log.info("{count} more refusals of {peer_host} ({reason}) not logged",
                          event=events.EV_SNI_REFUSED, peer_host=key[0], reason=key[1],
                          count=int(window[2]))
            if len(self._windows) >= _MAX_WINDOWS:
                self._windows.clear()
            window = self._windows[key] = [now, 0.0, 0.0]
        if window[1] < REFUSAL_BURST:
            window[1] += 1
            return True
        window[2] += 1
        return False


class SNIRouter(ServerFactory):
    """Serves a socket several TLS services share, by the server name asked for."""

    noisy = False

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime
        self._exact: Dict[str, Member] = {}
        self._wildcard: Dict[str, Member] = {}
        self._default: Optional[Member] = None
        self.timeout = 10.0
        self.refusals = _Refusals()

    def route(self, members: Sequence[Member]) -> None:
        """Route to ``members`` from now on (a name listed twice: the later one)."""
        exact: Dict[str, Member] = {}
        wildcard: Dict[str, Member] = {}
        default = None
        for member in members:
            if not member.names:
                default = member
            for name in member.names:
                if name.startswith("*."):
                    wildcard[name[2:]] = member
                else:
                    exact[name] = member
        self._exact, self._wildcard, self._default = exact, wildcard, default
        self.timeout = min((m.hello_timeout for m in members), default=10.0)

    def lookup(self, name: Optional[str]) -> Optional[Member]:
        """The member serving ``name`` (or no name): exact, wildcard, default."""
        if name is not None:
            found = self._exact.get(name)
            if found is None and "." in name:
                found = self._wildcard.get(name.split(".", 1)[1])
            if found is not None:
                return found
        return self._default

    def buildProtocol(self, addr: Optional[IAddress]) -> HelloReader:
        return HelloReader(self, addr)


class HelloReader(Protocol):
    """Reads one connection's ClientHello and hands it to the service it names."""

    transport: Any

    def __init__(self, router: SNIRouter, addr: Optional[IAddress]) -> None:
        self.router = router
        self.addr = addr
        self._buffer = bytearray()
        self._need = 0
        self._timer: Optional[IDelayedCall] = None
        self._done = False

    def connectionMade(self) -> None:
        reactor = self.router.runtime.reactor
        self._timer = reactor.callLater(self.router.timeout, self._timed_out)

    def dataReceived(self, data: bytes) -> None:
        if self._done:
            return
        self._buffer += data
        if len(self._buffer) < self._need:
            return  # a record is not all there yet: nothing to parse
        try:
            hello = read_client_hello(bytes(self._buffer))
        except HelloError as e:
            self._refuse("malformed ClientHello", str(e))
            return
        if isinstance(hello, Incomplete):
            self._need = hello.need
            if hello.need > MAX_BUFFERED:
                self._refuse("malformed ClientHello", "too large")
            return
        self._route(hello.server_name, hello.record_version)

    def _route(self, sent: Optional[bytes], record_version: bytes) -> None:
        name = None if sent is None else requested_name(sent)
        member = self.router.lookup(name)
        if member is not None:
            self._hand_over(member)
            return
        if sent is None:
            reason, shown = "no server name", ""
        else:
            reason = "unknown server name" if name is not None else "invalid server name"
            shown = printable(sent[:100].decode("utf-8", "surrogateescape"))
        self._refuse(reason, shown, answer=alert(UNRECOGNIZED_NAME, record_version),
                     server_name=shown)

    def _hand_over(self, member: Member) -> None:
        self._finish()
        transport = self.transport
        protocol = member.factory.buildProtocol(self.addr)
        if protocol is None:  # refused by the service's own checks (logged there)
            transport.loseConnection()
            return
        twistedprivate.switch_protocol(transport, protocol)
        protocol.makeConnection(transport)
        protocol.dataReceived(bytes(self._buffer))
        self._buffer = bytearray()

    def _timed_out(self) -> None:
        self._timer = None
        if not self._done:
            self._refuse("no ClientHello", f"none within {self.router.timeout:g}s")

    def _refuse(self, reason: str, detail: str, *, answer: bytes = b"",
                server_name: Optional[str] = None) -> None:
        self._finish()
        peer = Peer.from_address(self.addr)
        if self.router.refusals.should_log((peer.host, reason), self.router.runtime.seconds()):
            local = self.transport.getHost()
            _log.info("{where}: refused {peer_host}: {reason} {detail}",
                      event=events.EV_SNI_REFUSED, where=f"{local.host}:{local.port}",
                      reason=reason, detail=detail, server_name=server_name,
                      peer_host=peer.host, peer_port=peer.port)
        if answer:
            self.transport.write(answer)
        self.transport.loseConnection()

    def _finish(self) -> None:
        self._done = True
        timer, self._timer = self._timer, None
        if timer is not None and timer.active():
            timer.cancel()

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        self._finish()
