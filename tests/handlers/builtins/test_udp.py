"""Tests for superd.handlers.builtins.udp: the anti-reflection guard and the datagram handler."""

from __future__ import annotations

import pytest
from twisted.internet.testing import EventLoggingObserver
from zope.interface.verify import verifyObject

from superd.config.model import SocketType
from superd.core.interfaces import IDatagramHandler
from superd.core.session import Peer
from superd.handlers.builtins.echo import echo_reply
from superd.handlers.builtins.udp import (
    DROP_LOG_WINDOW,
    BuiltinDatagramHandler,
    DropReporter,
    reflection_risk,
)
from superd.observe.events import EV_PEER_ERROR, EV_REFLECTION_DROP, EV_START
from tests.handlers.builtins.conftest import make_runtime, make_service, named

PROTECTED = frozenset({17019, 17013})


@pytest.mark.parametrize(("host", "port", "reason"), [
    ("127.0.0.2", 7, "privileged_port"),
    ("127.0.0.2", 0, "privileged_port"),
    ("127.0.0.2", 1023, "privileged_port"),
    ("127.0.0.2", 17019, "protected_port"),
    ("127.0.0.2", 2049, "protected_port"),
    ("255.255.255.255", 40000, "broadcast"),
    ("255.1.2.3", 40000, "broadcast"),
    ("224.0.0.1", 40000, "multicast"),
    ("239.255.255.250", 40000, "multicast"),
    ("0.0.0.0", 40000, "unspecified"),
    ("ff02::1", 40000, "multicast"),
    ("::", 40000, "unspecified"),
    ("::ffff:224.0.0.1", 40000, "multicast"),
    ("::ffff:255.255.255.255", 40000, "broadcast"),
    ("::10.1.2.3", 40000, "v4_compatible"),
    ("not-an-address", 40000, "bad_address"),
])
def test_risky_sources_are_refused(host: str, port: int, reason: str) -> None:
    """Privileged/protected ports and broadcast/multicast/unspecified sources get no reply."""
    assert reflection_risk(Peer(host, port), PROTECTED) == reason


@pytest.mark.parametrize(("host", "port"), [
    ("127.0.0.2", 1024),
    ("127.0.0.1", 65535),
    ("192.0.2.10", 40000),
    ("::1", 40000),
    ("2001:db8::1", 40000),
    ("::ffff:192.0.2.10", 40000),
    ("fe80::1", 40000),
])
def test_ordinary_sources_are_answered(host: str, port: int) -> None:
    """Unicast sources on unprivileged, unprotected ports (1024 included) are answered."""
    assert reflection_risk(Peer(host, port), PROTECTED) is None


def echo_handler() -> tuple[BuiltinDatagramHandler, list[bytes]]:
    runtime = make_runtime()
    service = make_service("echo", SocketType.DGRAM, port=17007)
    return BuiltinDatagramHandler(service, runtime, echo_reply, PROTECTED), []


def test_handler_provides_interface() -> None:
    """The handler is a verified IDatagramHandler that replies (suppress_replies False)."""
    handler, _ = echo_handler()
    assert verifyObject(IDatagramHandler, handler)
    assert handler.suppress_replies is False


def test_safe_source_is_answered_and_logged(events: EventLoggingObserver) -> None:
    """A datagram from a safe source gets its reply and a START event with pid 0."""
    handler, sent = echo_handler()
    handler.handle_datagram(b"ping", Peer("127.0.0.2", 40000), sent.append)
    assert sent == [b"ping"]
    (start,) = named(events, EV_START)
    assert (start["service_id"], start["pid"], start["peer_host"]) == ("echo", 0, "127.0.0.2")


def test_risky_source_is_dropped_silently_on_the_wire(events: EventLoggingObserver) -> None:
    """A datagram from port 7 gets no reply, no START, one drop event with the reason."""
    handler, sent = echo_handler()
    handler.handle_datagram(b"loop", Peer("127.0.0.2", 7), sent.append)
    assert sent == []
    assert named(events, EV_START) == []
    (drop,) = named(events, EV_REFLECTION_DROP)
    fields = (drop["peer_host"], drop["peer_port"], drop["reason"])
    assert fields == ("127.0.0.2", 7, "privileged_port")


def test_drop_events_are_rate_limited_per_source(events: EventLoggingObserver) -> None:
    """A flood from one source logs once per window, then reports how many went unlogged."""
    clock = make_runtime().reactor
    reporter = DropReporter(clock, "echo")
    for _ in range(100):
        reporter.report(Peer("192.0.2.1", 19), "privileged_port")
    reporter.report(Peer("192.0.2.2", 19), "privileged_port")
    assert len(named(events, EV_REFLECTION_DROP)) == 2
    clock.advance(DROP_LOG_WINDOW)
    reporter.report(Peer("192.0.2.1", 19), "privileged_port")
    drops = named(events, EV_REFLECTION_DROP)
    assert len(drops) == 3 and drops[-1]["suppressed"] == 99
    assert reporter.dropped == 102


def test_drop_table_is_bounded(events: EventLoggingObserver) -> None:
    """Beyond its capacity, sources share one summary event per window; memory stays bounded."""
    clock = make_runtime().reactor
    reporter = DropReporter(clock, "echo", capacity=4)
    for n in range(1000):
        reporter.report(Peer(f"10.0.{n // 256}.{n % 256}", 19), "privileged_port")
    drops = named(events, EV_REFLECTION_DROP)
    assert len(drops) == 5  # four tracked sources + one summary
    assert drops[-1]["peer_host"] == "<many sources>"
    assert len(reporter._sources) == 4
    clock.advance(DROP_LOG_WINDOW)
    reporter.report(Peer("10.9.9.9", 19), "privileged_port")
    assert named(events, EV_REFLECTION_DROP)[-1]["peer_host"] == "10.9.9.9"


def test_discard_replies_to_nobody_and_skips_the_check(events: EventLoggingObserver) -> None:
    """Discard never replies, so even a port-7 source is simply served (no drop event)."""
    runtime = make_runtime()
    service = make_service("discard", SocketType.DGRAM)
    handler = BuiltinDatagramHandler(service, runtime, lambda data: None, PROTECTED,
                                     replies=False)
    assert handler.suppress_replies is True
    sent: list[bytes] = []
    handler.handle_datagram(b"x", Peer("127.0.0.2", 7), sent.append)
    assert sent == []
    assert named(events, EV_REFLECTION_DROP) == []


def test_send_failure_is_logged_not_raised(events: EventLoggingObserver) -> None:
    """An OSError from the reply (full buffer, unreachable) is logged and serving continues."""
    handler, _ = echo_handler()

    def failing_reply(data: bytes) -> None:
        raise OSError(105, "No buffer space available")

    handler.handle_datagram(b"ping", Peer("127.0.0.2", 40000), failing_reply)
    (error,) = named(events, EV_PEER_ERROR)
    assert error["service_id"] == "echo"
