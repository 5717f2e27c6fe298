"""Tests for superd.handlers.builtins.clock: daytime (xinetd's bytes) and time (RFC 868)."""

from __future__ import annotations

import calendar
import os
import socket
import time
from collections.abc import Iterator

import pytest
from twisted.internet.error import ConnectionDone
from twisted.internet.testing import EventLoggingObserver
from twisted.python.failure import Failure

from superd.handlers.builtins.base import LINGER_TIMEOUT
from superd.handlers.builtins.clock import (
    DaytimeStream,
    ReplyHandler,
    TimeStream,
    daytime_bytes,
    time_bytes,
)
from superd.handlers.builtins.registry import stream_handler
from tests.handlers.builtins.conftest import (
    CLIENT,
    INSTANT,
    PushBackTransport,
    make_runtime,
    make_service,
    make_session,
    named,
)


@pytest.fixture
def timezone() -> Iterator[None]:
    """Lets a test set ``TZ``; restores the process's zone afterwards."""
    saved = os.environ.get("TZ")
    yield
    if saved is None:
        os.environ.pop("TZ", None)
    else:
        os.environ["TZ"] = saved
    time.tzset()


def set_tz(zone: str) -> None:
    os.environ["TZ"] = zone
    time.tzset()


def test_daytime_is_xinetds_bytes_in_utc(timezone: None) -> None:
    """The reply is byte-for-byte xinetd's capture for 2026-11-29 22:18:01 UTC."""
    set_tz("UTC")
    assert daytime_bytes(INSTANT) == b"29 NOV 2026 22:18:01 UTC\r\n"


def test_daytime_uses_local_time_and_zone(timezone: None) -> None:
    """Local time and zone name follow TZ (POSIX rule, no tzdata needed); fractions truncate."""
    set_tz("CET-1")
    assert daytime_bytes(INSTANT + 0.999) == b"29 NOV 2026 23:18:01 CET\r\n"


def test_daytime_pads_day_and_time_not_year(timezone: None) -> None:
    """Day, hour, minute and second are two digits; months are uppercase English."""
    set_tz("UTC")
    instant = calendar.timegm((2027, 3, 5, 4, 3, 2, 0, 0, 0))
    assert daytime_bytes(instant) == b"05 MAR 2027 04:03:02 UTC\r\n"


def test_daytime_within_one_second_follows_a_zone_change(timezone: None) -> None:
    """The line is reused within a second, but a zone set (tzset) in that second shows at once."""
    set_tz("UTC")
    assert daytime_bytes(INSTANT) == b"29 NOV 2026 22:18:01 UTC\r\n"
    assert daytime_bytes(INSTANT + 0.5) == b"29 NOV 2026 22:18:01 UTC\r\n"
    set_tz("CET-1")
    assert daytime_bytes(INSTANT + 0.6) == b"29 NOV 2026 23:18:01 CET\r\n"
    assert daytime_bytes(INSTANT + 1) == b"29 NOV 2026 23:18:02 CET\r\n"


def test_time_matches_xinetd_capture() -> None:
    """RFC 868 bytes equal those xinetd sent at Unix time 1795990315."""
    assert time_bytes(1795990315) == b"\xee\xb7!\xab"


def test_time_for_known_instant() -> None:
    """2026-11-29T22:18:01Z is 4004979481 seconds after 1900-01-01, big-endian."""
    assert time_bytes(INSTANT) == int(INSTANT + 2208988800).to_bytes(4, "big")
    assert time_bytes(INSTANT) == b"\xee\xb7\x23\x19"


def test_time_wraps_modulo_2_32_in_2036() -> None:
    """At 2036-02-07T06:28:16Z the count wraps to 0, and continues from there."""
    wrap = calendar.timegm((2036, 2, 7, 6, 28, 16, 0, 0, 0))
    assert time_bytes(wrap - 1) == b"\xff\xff\xff\xff"
    assert time_bytes(wrap) == b"\x00\x00\x00\x00"
    later = calendar.timegm((2040, 1, 1, 0, 0, 0, 0, 0, 0))
    assert int.from_bytes(time_bytes(later), "big") == later + 2208988800 - 2**32


def test_time_epoch_is_1900() -> None:
    """Unix time 0 is 2208988800 seconds after the RFC 868 epoch (not 0, as wire.Time sends)."""
    assert time_bytes(0) == (2208988800).to_bytes(4, "big")


def test_stream_time_writes_then_closes() -> None:
    """Stream time writes its 4 bytes from the injected clock, then loses the connection."""
    runtime = make_runtime()
    proto = TimeStream(make_service("time"), runtime, make_session(runtime))
    transport = PushBackTransport()
    proto.makeConnection(transport)
    assert transport.value() == b"\xee\xb7\x23\x19"
    assert transport.disconnecting and not transport.aborted


def test_stream_daytime_writes_then_closes(timezone: None) -> None:
    """Stream daytime writes the line for the injected clock, then loses the connection."""
    set_tz("UTC")
    runtime = make_runtime()
    proto = DaytimeStream(make_service("daytime"), runtime, make_session(runtime))
    transport = PushBackTransport()
    proto.makeConnection(transport)
    assert transport.value() == b"29 NOV 2026 22:18:01 UTC\r\n"
    assert transport.disconnecting


def test_peer_that_never_reads_is_aborted_after_linger() -> None:
    """If the reply is never flushed, the connection is aborted after the linger time."""
    runtime = make_runtime()
    proto = TimeStream(make_service("time"), runtime, make_session(runtime))
    transport = PushBackTransport()
    proto.makeConnection(transport)
    runtime.reactor.advance(LINGER_TIMEOUT)
    assert transport.aborted


def test_normal_close_cancels_abort_and_ends_session() -> None:
    """When the close completes the abort timer is cancelled and the session ends."""
    runtime = make_runtime()
    proto = TimeStream(make_service("time"), runtime, make_session(runtime))
    transport = PushBackTransport()
    proto.makeConnection(transport)
    proto.dataReceived(b"garbage the client sent anyway")
    proto.connectionLost(Failure(ConnectionDone()))
    assert runtime.reactor.getDelayedCalls() == []
    assert proto.session.ended
    runtime.reactor.advance(LINGER_TIMEOUT)
    assert not transport.aborted


@pytest.mark.parametrize(("name", "reply"), [
    ("daytime", b"29 NOV 2026 22:18:01 UTC\r\n"),
    ("time", b"\xee\xb7\x23\x19"),
])
def test_reply_from_a_bare_descriptor(name: str, reply: bytes, timezone: None,
                                      events: EventLoggingObserver) -> None:
    """daytime and time answer a bare accepted descriptor (the port's fast
    path): the same bytes as the protocol, START logged with the peer; the
    descriptor is left open for the port to close."""
    set_tz("UTC")
    runtime = make_runtime()
    handler = stream_handler(make_service(name), runtime)
    assert isinstance(handler, ReplyHandler)
    ours, theirs = socket.socketpair()
    with ours, theirs:
        handler.answer_fd(CLIENT, ours.fileno())
        ours.shutdown(socket.SHUT_WR)
        assert theirs.recv(64) == reply and theirs.recv(64) == b""
    (start,) = named(events, "start")
    assert (start["service_id"], start["pid"], start["peer_host"]) == (name, 0, "127.0.0.2")


def test_reply_to_a_peer_that_reset_raises_nothing() -> None:
    """A peer gone before the reply (write fails with EPIPE/ECONNRESET):
    no exception reaches the port."""
    runtime = make_runtime()
    handler = stream_handler(make_service("time"), runtime)
    ours, theirs = socket.socketpair()
    theirs.close()
    with ours:
        handler.answer_fd(CLIENT, ours.fileno())  # type: ignore[attr-defined]


def test_echo_has_no_bare_descriptor_path() -> None:
    """Builtins that keep talking need a transport: only the reply builtins
    offer ``answer_fd``."""
    runtime = make_runtime()
    for name in ("echo", "discard", "chargen"):
        assert not hasattr(stream_handler(make_service(name), runtime), "answer_fd")
