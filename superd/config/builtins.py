"""
The names superd serves itself (``type = INTERNAL`` without a ``factory``):
which (service name, socket type) pairs the loader accepts as builtins.

The handlers for them are ``superd.handlers.builtins.registry``; a test
keeps the two tables in step.
"""

from __future__ import annotations

from typing import Final

from superd.config.model import SocketType

__all__ = ["BUILTIN_NAMES", "is_builtin"]

_BOTH = ("echo", "discard", "chargen", "daytime", "time")

#: Every (name, socket type) pair superd recognises as a builtin.
BUILTIN_NAMES: Final[frozenset[tuple[str, SocketType]]] = frozenset(
    {(name, SocketType.STREAM) for name in (*_BOTH, "tcpmux")}
    | {(name, SocketType.DGRAM) for name in _BOTH}
)


def is_builtin(name: str, socket_type: SocketType) -> bool:
    """True if superd serves ``name`` over ``socket_type`` in-process."""
    return (name, socket_type) in BUILTIN_NAMES
