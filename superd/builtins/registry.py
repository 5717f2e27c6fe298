"""
The table of builtin services: (service name, socket type) -> handler.

Like OpenBSD inetd's ``biltins[]``, the builtins are data: one row per
(name, socket type) pair.  The configuration loader asks ``is_builtin`` at
load time whether a ``type = INTERNAL`` service names something superd serves
itself; the assembly asks ``stream_handler`` / ``datagram_handler`` for the
handler it wraps in access control.

``tcpmux`` (RFC 1078) is a builtin name for ``socket_type = stream`` only, so
configurations naming it load; its protocol is not in the handler table yet
(issue 6), and ``stream_handler`` refuses it with a clear error.
"""

from __future__ import annotations

from superd.config.model import SocketType

__all__ = ["BUILTIN_NAMES", "is_builtin"]

#: Builtins served for both ``stream`` and ``dgram``.
_BOTH = frozenset({"echo", "discard", "chargen", "daytime", "time"})

#: Every (name, socket type) pair superd recognises as a builtin.
BUILTIN_NAMES: frozenset[tuple[str, SocketType]] = frozenset(
    {(name, kind) for name in _BOTH for kind in (SocketType.STREAM, SocketType.DGRAM)}
    | {("tcpmux", SocketType.STREAM)}
)


def is_builtin(name: str, socket_type: SocketType) -> bool:
    """True if superd serves ``name`` over ``socket_type`` in-process."""
    return (name, socket_type) in BUILTIN_NAMES
