"""
Fakes shared by the builtin tests: a service, a runtime on a
``MemoryReactorClock``, an admitted session, a transport that pushes back
like a real one, and a capture of the log events.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, Optional

import pytest
from twisted.internet.address import IPv4Address
from twisted.internet.testing import EventLoggingObserver, MemoryReactorClock, StringTransport
from twisted.logger import globalLogPublisher

from superd.config.model import Location, ServiceConfig, SocketType
from superd.core.runtime import Runtime
from superd.core.session import Peer, Session
from superd.observe.events import connection_events

#: 2026-11-29T22:18:01Z: the instant of a daytime answer captured from xinetd.
INSTANT = 1795990681.0


def make_service(name: str, socket_type: SocketType = SocketType.STREAM,
                 port: Optional[int] = 17007, **changes: Any) -> ServiceConfig:
    """A validated ``type = INTERNAL`` service called ``name``."""
    return ServiceConfig(
        name=name, id=changes.pop("id", name), location=Location("test.conf", 1),
        socket_type=socket_type,
        protocol="tcp" if socket_type is SocketType.STREAM else "udp",
        wait=socket_type is SocketType.DGRAM, port=port,
        type=frozenset({"INTERNAL", "UNLISTED"}), **changes)


def make_runtime(now: float = INSTANT) -> Runtime:
    """A runtime whose reactor is a ``MemoryReactorClock`` set to ``now``."""
    reactor = MemoryReactorClock()
    reactor.advance(now)
    return Runtime(reactor=reactor)


CLIENT = Peer("127.0.0.2", 40001)


def make_session(runtime: Runtime, service_id: str = "svc",
                 peer: Peer = CLIENT) -> Session:
    """A session admitted now."""
    return Session(service_id=service_id, peer=peer, local=Peer("127.0.0.1", 17007),
                   started=runtime.seconds())


class PushBackTransport(StringTransport):
    """
    A ``StringTransport`` that applies back-pressure as Twisted's TCP
    transport does: a streaming producer is paused from inside ``write`` once
    more than ``bufferSize`` bytes are unsent, and resumed when the test
    "sends" the buffer with ``drain``.  It also records ``abortConnection``.
    """

    bufferSize = 64 * 1024

    def __init__(self) -> None:
        super().__init__(peerAddress=IPv4Address("TCP", "127.0.0.2", 40001))
        self.consumer_paused = False
        self.aborted = False
        self.high_water = 0

    def write(self, data: bytes) -> None:
        super().write(data)
        unsent = len(self.io.getvalue())
        self.high_water = max(self.high_water, unsent)
        full = unsent > self.bufferSize and not self.consumer_paused
        if full and self.producer is not None and self.streaming:
            self.consumer_paused = True
            self.producer.pauseProducing()

    def drain(self) -> bytes:
        """What the peer read; resumes a paused producer as the buffer empties."""
        data: bytes = self.value()
        self.clear()
        if self.producer is not None and self.consumer_paused:
            self.consumer_paused = False
            self.producer.resumeProducing()
        return data

    def abortConnection(self) -> None:
        self.aborted = True
        super().abortConnection()


@pytest.fixture
def events() -> Iterator[EventLoggingObserver]:
    """Every log event emitted during the test."""
    observer = EventLoggingObserver()
    # As the JSON log does: the builtins' per-connection events too.
    sent = connection_events.sent_to_main_log
    connection_events.send_to_main_log()
    globalLogPublisher.addObserver(observer)
    yield observer
    globalLogPublisher.removeObserver(observer)
    connection_events.send_to_main_log(sent)


def named(events: EventLoggingObserver, name: str) -> list[dict[str, Any]]:
    """The captured events whose ``event`` field is ``name``."""
    return [dict(e) for e in events if e.get("event") == name]
