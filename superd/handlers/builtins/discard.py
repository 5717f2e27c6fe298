"""
Discard (RFC 863): read and drop everything; never reply.

Stream: bytes are dropped as they arrive, so memory use does not depend on
what the client sends; when the client closes (or half-closes) its side, the
connection is closed.  Datagram: nothing is ever sent, so the handler skips
the anti-reflection check.
"""

from __future__ import annotations

from typing import Optional

from superd.handlers.builtins.base import BuiltinProtocol

__all__ = ["DiscardStream", "discard_reply"]


class DiscardStream(BuiltinProtocol):
    """Reads a stream connection and drops what it reads."""

    logs_exit = True

    # BuiltinProtocol.dataReceived already drops the bytes.  The protocol is
    # not half-close aware, so Twisted closes the connection at the client's
    # EOF: there is nothing left to send.


def discard_reply(data: bytes) -> Optional[bytes]:
    """The discard service's reply to a datagram: none."""
    return None
