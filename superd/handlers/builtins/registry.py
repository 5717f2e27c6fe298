"""
The table of builtin services: (service name, socket type) -> handler.

Like OpenBSD inetd's ``biltins[]``, the builtins are data: one row per
(name, socket type) pair.  The configuration loader asks ``is_builtin`` at
load time whether a ``type = INTERNAL`` service names something superd serves
itself; the assembly asks ``stream_handler`` / ``datagram_handler`` for the
handler it wraps in access control.

Which names are builtins at all is the configuration's table
(``superd.config.builtins``); ``tcpmux`` is one, served by
``superd.handlers.tcpmux`` rather than by this table.
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
    "DATAGRAM_BUILTINS",
    "STREAM_BUILTINS",
    "DatagramBuiltin",
    "datagram_handler",
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

def _not_served(service: ServiceConfig) -> Exception:
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
