"""
A session: one admitted connection (or datagram exchange) from admission to end.

The access layer creates a ``Session`` when it admits a peer and registers the
releases it needs (instance and per-source counts) with ``on_end``.  Whoever
serves the session -- a builtin protocol, a spawned child, a relay -- calls
``end()`` exactly when the session is over: on ``connectionLost`` for
in-process protocols, on the child's exit for spawned servers.  ``end`` is
idempotent, so a belt-and-braces second call is harmless.

Whoever serves a session also says how superd can end it early
(``serve_with``): abort the connection of an in-process protocol, stop the
child's process group.  ``terminate(reason)`` (a ban, a reload whose rules
refuse the session) runs that and records why; ``end()`` still follows only
when the connection or the child is really gone, and the EXIT line logged
then carries ``end_reason``.
"""

from __future__ import annotations

from typing import Callable, List, Optional

import attrs

from superd.core.origin import ProxyOrigin
from superd.core.peer import Peer, UnixPeer, canonical_host, parse_host

__all__ = ["Peer", "Session", "Terminator", "UnixPeer", "canonical_host", "parse_host"]

#: Ends a session early: aborts its connection or stops its server process.
Terminator = Callable[[], object]


@attrs.define(eq=False)
class Session:
    """One admitted peer of one service, until ``end()``."""

    service_id: str
    peer: Optional[Peer]
    local: Optional[Peer]
    started: float
    #: The configuration block that admitted it (``ServiceConfig.block_key``),
    #: under which instances and per_source count it; the id by default.
    block: str = attrs.field(
        kw_only=True, default=attrs.Factory(lambda s: s.service_id, takes_self=True))
    #: What the PROXY header said, when the service reads one
    #: (``proxy_protocol``): ``peer`` is then the client it named.
    origin: Optional[ProxyOrigin] = attrs.field(kw_only=True, default=None)
    #: The source ``per_source`` counts it under when that is not
    #: ``peer.host``: its IPv6 network (``v6_source_prefix``).
    source: Optional[str] = attrs.field(kw_only=True, default=None)
    #: Set by the spawner when a child serves the session.
    pid: Optional[int] = None
    ended: bool = False
    #: Why superd ended the session before its client or server did
    #: (``terminate``), or None.
    end_reason: Optional[str] = None
    _on_end: List[Callable[["Session"], None]] = attrs.field(factory=list)
    _terminator: Optional[Terminator] = None

    def on_end(self, callback: Callable[["Session"], None]) -> None:
        """Call ``callback(self)`` when the session ends (at once if it has)."""
        if self.ended:
            callback(self)
        else:
            self._on_end.append(callback)

    def end(self) -> None:
        """Mark the session over and run the end callbacks, once."""
        if self.ended:
            return
        self.ended = True
        self._terminator = None  # it holds the connection or the child
        callbacks, self._on_end = self._on_end, []
        for callback in callbacks:
            callback(self)

    def serve_with(self, terminator: Terminator) -> None:
        """Say how to end this session early; the latest caller serves it
        (the access layer's connection, then perhaps a child)."""
        self._terminator = terminator

    def terminate(self, reason: str) -> bool:
        """
        End the session early, for ``reason``: run its terminator now; the
        session ends when what served it is gone.  False when it has ended,
        is already being ended, or nothing serving it said how to end it.
        """
        if self.ended or self.end_reason is not None or self._terminator is None:
            return False
        self.end_reason = reason
        self._terminator()
        return True
