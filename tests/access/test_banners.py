"""Tests for ``superd.access.banners``: cached banners and polite refusals."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from twisted.internet import tcp
from twisted.internet.task import Clock

from superd.access.banners import MAX_BANNER, Banners, FailBannerProtocol, send_now
from tests.access.helpers import HalfCloseTransport, service


def test_load_reads_each_file_once(tmp_path: Path, log_events: list[dict[str, Any]]) -> None:
    """Banners are read at load; a missing file is reported and left out; size is capped."""
    (tmp_path / "big").write_bytes(b"x" * (MAX_BANNER + 10))
    banners = Banners.load(service(banner=str(tmp_path / "big"),
                                   banner_fail=str(tmp_path / "missing")))
    assert banners.banner == b"x" * MAX_BANNER
    assert banners.fail is None and banners.success is None
    problems = [e for e in log_events if e.get("event") == "config_warning"]
    assert [e["attribute"] for e in problems] == ["banner", "banner_fail"]


class FakeSocket:
    def __init__(self, takes: int | Exception) -> None:
        self.takes = takes
        self.sent = b""

    def send(self, data: bytes) -> int:
        if isinstance(self.takes, Exception):
            raise self.takes
        self.sent += data[:self.takes]
        return min(self.takes, len(data))


class TCPTransport(tcp.Connection):
    """A tcp.Connection stand-in: a fake socket and a recorded write buffer."""

    def __init__(self, sock: FakeSocket) -> None:
        self.socket = sock  # type: ignore[assignment]
        self.queued = b""

    def write(self, data: bytes) -> None:  # type: ignore[override]
        self.queued += data


def test_send_now_writes_to_the_socket_and_queues_the_rest() -> None:
    """Bytes the socket takes at once go there; the rest is queued in order."""
    partial = TCPTransport(FakeSocket(3))
    assert not send_now(partial, b"hello")
    assert (partial.socket.sent, partial.queued) == (b"hel", b"lo")  # type: ignore[attr-defined]
    whole = TCPTransport(FakeSocket(100))
    assert send_now(whole, b"hello") and whole.queued == b""
    blocked = TCPTransport(FakeSocket(BlockingIOError()))
    assert not send_now(blocked, b"hi") and blocked.queued == b"hi"


def test_send_now_never_bypasses_a_wrapping_transport() -> None:
    """A transport that is not a plain TCP connection (TLS) gets write()."""
    transport = HalfCloseTransport()
    transport.socket = FakeSocket(100)  # type: ignore[attr-defined]
    assert not send_now(transport, b"hello")
    assert transport.value() == b"hello" and transport.socket.sent == b""  # type: ignore[attr-defined]


def test_fail_banner_half_closes_drains_and_aborts() -> None:
    """banner_fail: the banner, FIN, input ignored, abort after the linger."""
    clock = Clock()
    protocol = FailBannerProtocol(b"no\r\n", clock, linger=3)
    transport = HalfCloseTransport()
    protocol.makeConnection(transport)
    protocol.dataReceived(b"ignored")
    assert transport.value() == b"no\r\n" and transport.write_closed
    clock.advance(3)
    assert transport.disconnecting


def test_fail_banner_closes_when_peer_closes() -> None:
    """If the peer closes first, the connection is closed and the timer cancelled."""
    clock = Clock()
    protocol = FailBannerProtocol(b"no\r\n", clock)
    transport = HalfCloseTransport()
    protocol.makeConnection(transport)
    protocol.readConnectionLost()
    assert transport.disconnecting
    protocol.connectionLost(None)
    assert not clock.getDelayedCalls()
