"""
Character generator (RFC 864), as BSD inetd sends it.

The pattern is the 95 printable ASCII characters, space (0x20) through tilde
(0x7E), in a ring; each line is 72 of them followed by CRLF, and each line
starts one character further round the ring.  So the output repeats every 95
lines (7030 bytes).  xinetd instead uses 93 characters without space or
tilde; superd sends the RFC's set.

Stream: the pattern is precomputed as whole cycles in one ~64 KiB chunk and
written through a push producer registered with the transport, so superd
writes large blocks while the client reads and stops producing the moment
the transport's buffer is full: memory stays bounded however slowly (or
never) the client reads.  The client's input is never read (as xinetd's
``shutdown(SHUT_RD)``), and a client that half-closes still receives the
stream (RFC 864: it ends when the client closes, which the next write
notices).

Datagram: one 74-byte line per request, as BSD inetd; the ring position is
kept per service and persists across datagrams.
"""

from __future__ import annotations

from typing import Any, Final

from twisted.internet.interfaces import (
    IHalfCloseableProtocol,
    IPushProducer,
)
from zope.interface import implementer

from superd.handlers.builtins.base import BuiltinProtocol

__all__ = [
    "CHUNK",
    "CYCLE",
    "LINE_LENGTH",
    "RING",
    "ChargenRing",
    "ChargenStream",
    "chargen_line",
]

#: The 95 printable characters, space included (RFC 864).
RING: Final = bytes(range(0x20, 0x7F))
#: Characters per line, before CRLF.
LINE_LENGTH: Final = 72

_DOUBLE_RING: Final = RING + RING


def chargen_line(index: int) -> bytes:
    """Line ``index`` (from 0) of the RFC 864 pattern, CRLF included."""
    start = index % len(RING)
    return _DOUBLE_RING[start:start + LINE_LENGTH] + b"\r\n"


#: One full cycle: lines 0..94; line 95 is line 0 again.
CYCLE: Final = b"".join(chargen_line(i) for i in range(len(RING)))
#: What the stream writes each time: as many whole cycles as fit in 64 KiB,
#: so every chunk starts on line 0 and one immutable object is reused.
CHUNK: Final = CYCLE * (64 * 1024 // len(CYCLE))

#: Chunks written per reactor turn when the consumer applies no back-pressure
#: of its own (a TCP transport pauses us after two); then yield the reactor.
_CHUNKS_PER_TURN: Final = 4


class ChargenRing:
    """The ring position of one datagram chargen service."""

    def __init__(self) -> None:
        self._index = 0

    def next_line(self) -> bytes:
        """The next 74-byte line; the following call starts one character on."""
        line = chargen_line(self._index)
        self._index = (self._index + 1) % len(RING)
        return line

    def reply(self, data: bytes) -> bytes:
        """The reply to one datagram (its content is ignored): the next line."""
        return self.next_line()


@implementer(IPushProducer, IHalfCloseableProtocol)
class ChargenStream(BuiltinProtocol):
    """Writes the chargen pattern for as long as the client reads it."""

    logs_exit = True

    _paused = True
    _stopped = False
    _next_turn: Any = None  # IDelayedCall

    def serve(self) -> None:
        # Never read the client's input (xinetd shuts the read side): a
        # client that floods us costs no CPU, the kernel's receive window
        # holds it back, and its close still shows as a failed write.
        self.transport.pauseProducing()
        self.transport.registerProducer(self, True)
        self.resumeProducing()

    def _produce(self) -> None:
        self._next_turn = None
        for _ in range(_CHUNKS_PER_TURN):
            if self._paused or self._stopped:
                return
            # A TCP transport calls pauseProducing() from inside write() once
            # its buffer passes its limit, which ends this loop.
            self.transport.write(CHUNK)
        if not (self._paused or self._stopped):
            self._next_turn = self.clock.callLater(0, self._produce)

    def pauseProducing(self) -> None:
        self._paused = True
        self._cancel_turn()

    def resumeProducing(self) -> None:
        if self._stopped or not self._paused:
            return
        self._paused = False
        self._produce()

    def stopProducing(self) -> None:
        self._stopped = True
        self._cancel_turn()

    def _cancel_turn(self) -> None:
        if self._next_turn is not None and self._next_turn.active():
            self._next_turn.cancel()
        self._next_turn = None

    def readConnectionLost(self) -> None:
        # The client half-closed; RFC 864 keeps sending until it closes.
        pass

    def writeConnectionLost(self) -> None:
        self.transport.loseConnection()

    def stop(self) -> None:
        self.stopProducing()
