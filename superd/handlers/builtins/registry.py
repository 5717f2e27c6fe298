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

from typing import Callable, Final

import attrs

from superd.config.model import ServiceConfig, SocketType
from superd.core.runtime import Runtime
from superd.handlers.builtins.base import BuiltinStreamHandler, ProtocolFactory
from superd.handlers.builtins.chargen import ChargenRing, ChargenStream
from superd.handlers.builtins.clock import (
    DaytimeStream,
    ReplyHandler,
    ReplyStream,
    TimeStream,
    daytime_bytes,
    time_bytes,
)
from superd.handlers.builtins.discard import DiscardStream, discard_reply
from superd.handlers.builtins.echo import EchoStream, echo_reply
from superd.handlers.builtins.udp import BuiltinDatagramHandler, Responder

__all__ = [
    "BUILTIN_NAMES",
    "DATAGRAM_BUILTINS",
    "STREAM_BUILTINS",
    "DatagramBuiltin",
    "datagram_handler",
    "is_builtin",
    "stream_handler",
]


@attrs.frozen
class DatagramBuiltin:
    """One row of the datagram table."""

    #: Builds the service's responder (once per service: chargen's ring
    #: position lives in it).
    responder: Callable[[Runtime], Responder]
    #: False for discard: it never replies, so no reflection check applies.
    replies: bool = True


def _clock_responder(render: Callable[[float], bytes]) -> Callable[[Runtime], Responder]:
    def responder(runtime: Runtime) -> Responder:
        return lambda data: render(runtime.seconds())
    return responder


#: Stream builtins that send one reply and close: ``ReplyHandler`` serves them,
#: from a bare descriptor when it can.
_REPLY_BUILTINS: Final[dict[str, type[ReplyStream]]] = {
    "daytime": DaytimeStream,
    "time": TimeStream,
}

#: Stream builtins: service name -> protocol for one connection.
STREAM_BUILTINS: Final[dict[str, ProtocolFactory]] = {
    "echo": EchoStream,
    "discard": DiscardStream,
    "chargen": ChargenStream,
    **_REPLY_BUILTINS,
}

#: Datagram builtins: service name -> how to answer one datagram.
DATAGRAM_BUILTINS: Final[dict[str, DatagramBuiltin]] = {
    "echo": DatagramBuiltin(lambda runtime: echo_reply),
    "discard": DatagramBuiltin(lambda runtime: discard_reply, replies=False),
    "chargen": DatagramBuiltin(lambda runtime: ChargenRing().reply),
    "daytime": DatagramBuiltin(_clock_responder(daytime_bytes)),
    "time": DatagramBuiltin(_clock_responder(time_bytes)),
}

#: Names recognised but not served by this table: tcpmux's protocol is a
#: later issue (6); its services load, and asking for a handler says why not.
_PENDING: Final = frozenset({("tcpmux", SocketType.STREAM)})

#: Every (name, socket type) pair superd recognises as a builtin.
BUILTIN_NAMES: Final[frozenset[tuple[str, SocketType]]] = frozenset(
    {(name, SocketType.STREAM) for name in STREAM_BUILTINS}
    | {(name, SocketType.DGRAM) for name in DATAGRAM_BUILTINS}
    | _PENDING
)


def is_builtin(name: str, socket_type: SocketType) -> bool:
    """True if superd serves ``name`` over ``socket_type`` in-process."""
    return (name, socket_type) in BUILTIN_NAMES


def _not_served(service: ServiceConfig) -> Exception:
    if (service.name, service.socket_type) in _PENDING:
        return NotImplementedError(
            f"service {service.name}: the tcpmux builtin is not implemented yet")
    return LookupError(
        f"service {service.name}: no builtin {service.name!r}"
        f" for socket_type {service.socket_type.value}")


def stream_handler(service: ServiceConfig, runtime: Runtime) -> BuiltinStreamHandler:
    """The ``IStreamHandler`` serving the stream builtin ``service.name``."""
    factory = STREAM_BUILTINS.get(service.name)
    if factory is None or service.socket_type is not SocketType.STREAM:
        raise _not_served(service)
    reply = _REPLY_BUILTINS.get(service.name)
    if reply is not None:
        return ReplyHandler(service, runtime, reply)
    return BuiltinStreamHandler(service, runtime, factory)


def datagram_handler(service: ServiceConfig, runtime: Runtime,
                     protected_ports: frozenset[int]) -> BuiltinDatagramHandler:
    """
    The ``IDatagramHandler`` serving the datagram builtin ``service.name``.

    ``protected_ports`` are the ports of every UDP builtin: replies to them
    are never sent.  The service's own configured port is added to them.
    """
    row = DATAGRAM_BUILTINS.get(service.name)
    if row is None or service.socket_type is not SocketType.DGRAM:
        raise _not_served(service)
    if service.port:
        protected_ports = protected_ports | {service.port}
    return BuiltinDatagramHandler(service, runtime, row.responder(runtime),
                                  protected_ports, replies=row.replies)
