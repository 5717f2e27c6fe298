"""
Where a connection that came through a load balancer really came from.

A service with ``proxy_protocol`` reads a PROXY protocol header before
anything else; the access layer then admits the client the header names
(``Session.peer``) and keeps what else the header said here, on
``Session.origin``, for the spawned server's environment and the logs.
"""

from __future__ import annotations

from typing import Optional, Tuple

import attrs

from superd.core.peer import Peer

__all__ = ["COMMAND_LOCAL", "COMMAND_PROXY", "COMMAND_UNKNOWN", "ProxyOrigin"]

#: The header names the client (v1 ``TCP4``/``TCP6``, v2 ``PROXY`` over IP).
COMMAND_PROXY = "PROXY"
#: v2 ``LOCAL``: the proxy's own connection (a health check); no client.
COMMAND_LOCAL = "LOCAL"
#: v1 ``UNKNOWN``, or v2 ``PROXY`` for an unspecified or UNIX-socket
#: client: no IP address to admit.
COMMAND_UNKNOWN = "UNKNOWN"


@attrs.frozen
class ProxyOrigin:
    """What a PROXY header said about one connection."""

    #: 1 or 2.
    version: int
    #: ``COMMAND_PROXY``, ``COMMAND_LOCAL`` or ``COMMAND_UNKNOWN``.
    command: str
    #: The load balancer: the connection's own peer.
    proxy: Peer
    #: The address the client connected to at the load balancer, if given.
    destination: Optional[Peer] = None
    #: v2 TLVs as ``(NAME, value)`` pairs, value printable text: each
    #: becomes ``PROXY_NAME`` in a spawned server's environment.
    facts: Tuple[Tuple[str, str], ...] = ()
