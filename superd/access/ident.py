"""
RFC 1413 ident lookups for ``log_on_success/failure = USERID`` and ``IDONLY``.

``twisted.protocols.ident`` is unusable on Python 3 (its client mixes
``str`` and ``bytes`` and raises ``TypeError``), so this is a small client
of our own, matching xinetd's ``ident.c:log_remote_user``:

* connect FROM the local address the client reached (identd checks it) TO
  the peer's ident port, send ``"<remote_port>,<local_port>\\r\\n"``;
* read one CRLF-terminated line of at most 1 KiB (never buffering more, so a
  responder that sends a megabyte or no newline costs 1 KiB);
* accept ``<rport> , <lport> : USERID : <rest>`` with matching ports and log
  ``<rest>``; anything else fails with one of xinetd's NOID reasons.

Everything is asynchronous on the injected reactor with one overall timeout,
so a slow or silent identd never delays other connections.  The Deferred
always fires with an ``IdentResult`` (cancelling it closes the connection).

``log_remote_user`` is the one call the access path makes: it looks the user
up and emits the USERID line, or the NOID line for ``IDONLY`` services.
"""

from __future__ import annotations

import contextlib
from typing import Any

import attrs
from twisted.internet import error as neterror
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IDelayedCall
from twisted.internet.protocol import ClientFactory, Protocol, connectionDone
from twisted.logger import Logger
from twisted.python.failure import Failure

from superd.access.identrules import IDENT_PORT, must_identify, wants_userid
from superd.config.model import ServiceConfig
from superd.core.session import Peer
from superd.observe.events import (
    EV_IDENT_FAILED,
    EV_NOID,
    EV_USERID,
    NOID_BAD_RESPONSE,
    NOID_NO_SERVER,
    NOID_RECEIVE_ERROR,
    NOID_SYSTEM_ERROR,
    NOID_TIMEOUT,
    block_of,
    noid_line,
    userid_line,
)

__all__ = [
    "DEFAULT_TIMEOUT",
    "IDENT_PORT",
    "MAX_REPLY",
    "IdentResult",
    "emit_noid",
    "emit_userid",
    "escape_text",
    "log_remote_user",
    "lookup_user",
    "must_identify",
    "parse_reply",
    "wants_userid",
]

#: xinetd's LOGUSER_SUCCESS_TIMEOUT / LOGUSER_FAILURE_TIMEOUT.
DEFAULT_TIMEOUT = 30.0
#: The reply line, CRLF included, must fit in this many bytes (xinetd IBUFSIZE).
MAX_REPLY = 1024

_log = Logger(namespace="superd")


@attrs.frozen
class IdentResult:
    """
    What an ident lookup found: ``user_text`` on success, else a NOID
    ``reason``.  ``detail`` explains a failure for the main log (already
    escaped: it may quote the responder's line).
    """

    user_text: str | None = None
    reason: str | None = None
    detail: str = ""

    @property
    def ok(self) -> bool:
        """True when the responder named a user."""
        return self.user_text is not None


# -- pure parts ---------------------------------------------------------------

def escape_text(raw: bytes) -> str:
    """
    ``raw`` (peer-supplied) as log-safe text: UTF-8 where valid, invalid
    bytes as ``\\xNN``, control characters as ``\\xNN``, so it can never
    break a log line or a terminal.
    """
    text = raw.decode("utf-8", "backslashreplace")
    if text.isprintable():
        return text
    return "".join(map(_escape_char, text))


def _escape_char(char: str) -> str:
    if char.isprintable():
        return char
    code = ord(char)
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def _port_matches(field: bytes, expected: int) -> bool:
    digits = field.strip()
    return digits.isdigit() and int(digits) == expected


def parse_reply(line: bytes, remote_port: int, local_port: int) -> str | None:
    """
    The user text of a reply line (CRLF removed), or None if the line is not
    ``<remote_port> , <local_port> : USERID : <text>`` -- the rules of
    xinetd's ``verify_line``: whitespace allowed around tokens, ``USERID``
    case-sensitive, ``<text>`` non-empty and kept verbatim (then escaped).
    """
    rport, comma, rest = line.partition(b",")
    lport, colon, rest = rest.partition(b":")
    if not (comma and colon and _port_matches(rport, remote_port)
            and _port_matches(lport, local_port)):
        return None
    rest = rest.lstrip()
    if not rest.startswith(b"USERID"):
        return None
    rest = rest[len(b"USERID"):].lstrip()
    if not rest.startswith(b":"):
        return None
    text = rest[1:].lstrip()
    return escape_text(text) if text else None


# -- the client ----------------------------------------------------------------

class _IdentQuery(Protocol):
    """Sends the query and reads one bounded reply line."""

    def __init__(self, lookup: _Lookup) -> None:
        self._lookup = lookup
        self._buffer = b""

    def connectionMade(self) -> None:
        self._lookup.connected(self)
        transport: Any = self.transport
        transport.write(self._lookup.query)

    def dataReceived(self, data: bytes) -> None:
        if self._lookup.done:
            return
        # Keep at most MAX_REPLY + 1 bytes, whatever the responder sends.
        self._buffer += data[:MAX_REPLY + 1 - len(self._buffer)]
        end = self._buffer.find(b"\r\n")
        if end >= 0 and end + 2 <= MAX_REPLY:
            self._lookup.line_received(self._buffer[:end])
        elif end >= 0 or len(self._buffer) >= MAX_REPLY:
            self._lookup.fail(NOID_RECEIVE_ERROR,
                              "too much input from identity server")

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        self._lookup.fail(NOID_RECEIVE_ERROR,
                          "identd server reply missing ending CR-LF")


class _IdentFactory(ClientFactory):
    noisy = False  # one per lookup: no "Starting factory" line per connection

    def __init__(self, lookup: _Lookup) -> None:
        self._lookup = lookup

    def buildProtocol(self, addr: Any) -> _IdentQuery:
        return _IdentQuery(self._lookup)

    def clientConnectionFailed(self, connector: Any, reason: Failure) -> None:
        self._lookup.connect_failed(reason)


class _Lookup:
    """The state of one lookup, finished exactly once."""

    def __init__(self, reactor: Any, remote: Peer, local: Peer,
                 timeout: float) -> None:
        self.query = b"%d,%d\r\n" % (remote.port, local.port)
        self.remote, self.local = remote, local
        self.done = False
        self.deferred: Deferred[IdentResult] = Deferred(self._cancel)
        self._protocol: _IdentQuery | None = None
        self._connector: Any = None
        self._timer: IDelayedCall = reactor.callLater(timeout, self._timed_out)

    def start(self, reactor: Any, port: int, timeout: float) -> None:
        self._connector = reactor.connectTCP(
            self.remote.host, port, _IdentFactory(self), timeout=timeout,
            bindAddress=_bind_address(self.local))

    def connected(self, protocol: _IdentQuery) -> None:
        self._protocol = protocol

    def line_received(self, line: bytes) -> None:
        text = parse_reply(line, self.remote.port, self.local.port)
        if text is None:
            self.fail(NOID_BAD_RESPONSE,
                      "bad line received from identity server: "
                      + escape_text(line))
        else:
            self._finish(IdentResult(user_text=text), abort=False)

    def connect_failed(self, reason: Failure) -> None:
        self.fail(*_connect_failure(reason))

    def fail(self, why: str, detail: str) -> None:
        self._finish(IdentResult(reason=why, detail=detail), abort=True)

    def _timed_out(self) -> None:
        self.fail(NOID_TIMEOUT, "no answer from identity server in time")

    def _finish(self, result: IdentResult, abort: bool) -> None:
        if self.done:
            return
        self.done = True
        self._release(abort)
        self.deferred.callback(result)

    def _cancel(self, deferred: Deferred[IdentResult]) -> None:
        if not self.done:
            self.done = True
            self._release(abort=True)

    def _release(self, abort: bool) -> None:
        if self._timer.active():
            self._timer.cancel()
        protocol, self._protocol = self._protocol, None
        if protocol is not None and protocol.transport is not None:
            transport: Any = protocol.transport
            if abort:
                transport.abortConnection()
            else:
                transport.loseConnection()
        elif self._connector is not None:
            # Still connecting (a connected lookup has a protocol).
            with contextlib.suppress(neterror.NotConnectingError):
                self._connector.stopConnecting()


def _bind_address(local: Peer) -> tuple[str, int] | None:
    if local.host in ("", "0.0.0.0", "::"):
        return None
    return (local.host, 0)


def _connect_failure(reason: Failure) -> tuple[str, str]:
    """xinetd's reason for a failed connect: bind problems are ours."""
    failure = reason.value
    detail = escape_text(str(failure).encode())
    if isinstance(failure, neterror.ConnectBindError):
        return NOID_SYSTEM_ERROR, detail
    if isinstance(failure, neterror.TimeoutError):
        return NOID_TIMEOUT, detail
    if isinstance(failure, neterror.ConnectError):
        return NOID_NO_SERVER, detail
    return NOID_SYSTEM_ERROR, detail


def lookup_user(reactor: Any, local: Peer, remote: Peer, *,
                port: int = IDENT_PORT,
                timeout: float = DEFAULT_TIMEOUT) -> Deferred[IdentResult]:
    """
    Ask ``remote``'s identd who owns the connection ``remote`` -> ``local``.

    ``local`` is the address and port the client reached (the lookup binds
    to that address), ``remote`` the client's.  ``reactor`` provides
    IReactorTCP and IReactorTime.  Fires with an ``IdentResult``; never
    errbacks except with ``CancelledError`` when cancelled.
    """
    lookup = _Lookup(reactor, remote, local, timeout)
    try:
        lookup.start(reactor, port, timeout)
    except Exception as error:
        lookup.fail(NOID_SYSTEM_ERROR, escape_text(repr(error).encode()))
    return lookup.deferred


# -- logging ---------------------------------------------------------------------

def emit_userid(service: ServiceConfig, peer: Peer, user_text: str) -> None:
    """Log ``USERID: <id> <text>`` (text already escaped by the client)."""
    _log.info("USERID {service_id} {peer_host}: {user_text}",
              event=EV_USERID, service_id=service.id,
              service_block=block_of(service), peer_host=peer.host,
              peer_port=peer.port, user_text=user_text,
              xinetd_line=userid_line(service.id, user_text))


def emit_noid(service: ServiceConfig, peer: Peer, reason: str) -> None:
    """Log ``NOID: <id> <addr> <reason>`` (IDONLY refusal)."""
    _log.info("NOID {service_id} {peer_host} {reason}",
              event=EV_NOID, service_id=service.id,
              service_block=block_of(service), peer_host=peer.host,
              peer_port=peer.port, reason=reason,
              xinetd_line=noid_line(service.id, peer.host, reason))


def _emit_failure(service: ServiceConfig, peer: Peer,
                  result: IdentResult) -> None:
    # As xinetd, "no server" is routine (most hosts run no identd).
    emit = _log.info if result.reason == NOID_NO_SERVER else _log.warn
    emit("ident lookup for {service_id} from {peer_host} failed: {reason}"
         " ({detail})", event=EV_IDENT_FAILED, service_id=service.id,
         peer_host=peer.host, peer_port=peer.port, reason=result.reason,
         detail=result.detail)


def log_remote_user(reactor: Any, service: ServiceConfig,
                    local: Peer | None, remote: Peer | None, *,
                    port: int = IDENT_PORT,
                    timeout: float = DEFAULT_TIMEOUT) -> Deferred[IdentResult]:
    """
    Look up the user of a connection of ``service`` and log the outcome:
    the USERID line on success; on failure a main-log event and, for an
    IDONLY service, the NOID line.  The caller refuses an IDONLY client when
    the result is not ``ok``.
    """
    if local is None or remote is None:
        result = IdentResult(reason=NOID_SYSTEM_ERROR,
                             detail="connection has no address")
        d: Deferred[IdentResult] = Deferred()
        d.callback(result)
    else:
        d = lookup_user(reactor, local, remote, port=port, timeout=timeout)

    def report(result: IdentResult) -> IdentResult:
        peer = remote if remote is not None else Peer("<no address>", 0)
        if result.user_text is not None:
            emit_userid(service, peer, result.user_text)
            return result
        _emit_failure(service, peer, result)
        if must_identify(service) and result.reason is not None:
            emit_noid(service, peer, result.reason)
        return result

    return d.addCallback(report)
