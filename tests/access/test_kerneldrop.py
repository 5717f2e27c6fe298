"""Tests for ``superd.access.kerneldrop``: hammering banned sources dropped in the kernel."""

from __future__ import annotations

import socket
import sys
from pathlib import Path
from typing import Any

import pytest
from twisted.internet.task import Clock

from superd.access.factory import AccessControlledFactory
from superd.access.kerneldrop import (
    SO_ATTACH_FILTER,
    SO_DETACH_FILTER,
    KernelDrop,
    attach_program,
    filter_program,
)
from tests.access.helpers import RecordingHandler, connect, make_access, service

linux = pytest.mark.skipif(not sys.platform.startswith("linux"),
                           reason="socket filters are Linux-only")


def udp_reaches(server: socket.socket, source: str) -> bool:
    family = socket.AF_INET6 if ":" in source else socket.AF_INET
    target = "::1" if ":" in source else "127.0.0.1"
    with socket.socket(family, socket.SOCK_DGRAM) as client:
        client.bind((source, 0))
        client.sendto(b"x", (target, server.getsockname()[1]))
    server.settimeout(0.3)
    try:
        return server.recv(10) == b"x"
    except TimeoutError:
        return False


@linux
def test_program_drops_listed_sources_only() -> None:
    """The filter drops listed IPv4 and IPv6 sources on a dual-stack socket,
    including past a long IPv4 block, and lets others through."""
    many = [f"10.0.{i // 250}.{i % 250}" for i in range(300)]
    program = filter_program([*many, "127.0.0.3", "::1", "2001:db8::1"])
    server = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
    server.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
    server.bind(("::", 0))
    attach_program(server, program)
    assert udp_reaches(server, "127.0.0.2")
    assert not udp_reaches(server, "127.0.0.3")
    assert not udp_reaches(server, "::1")
    server.close()
    v6 = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
    v6.bind(("::1", 0))
    attach_program(v6, filter_program(["2001:db8::1", "127.0.0.3"]))
    assert udp_reaches(v6, "::1")
    v6.close()


class FakeSocket:
    def __init__(self, fail: bool = False) -> None:
        self.calls: list[tuple[int, Any]] = []
        self.fail = fail

    def setsockopt(self, level: int, option: int, value: Any) -> None:
        if self.fail:
            raise OSError(92, "Protocol not available")
        self.calls.append((option, value))


def make(sockets: list[FakeSocket], banned: set[str]) -> tuple[KernelDrop, Clock]:
    clock = Clock()
    drop = KernelDrop(clock, lambda: sockets, banned.__contains__,  # type: ignore[arg-type,return-value]
                      threshold=3, window=10)
    return drop, clock


def test_threshold_within_window_then_lifted_when_ban_ends(
        monkeypatch: pytest.MonkeyPatch, log_events: list[dict[str, Any]]) -> None:
    """A source refused `threshold` times in a window is filtered, and released
    (filter detached) once it is no longer banned."""
    attached: list[bytes] = []
    monkeypatch.setattr("superd.access.kerneldrop.attach_program",
                        lambda sock, program: attached.append(program))
    sock, banned = FakeSocket(), {"10.0.0.3"}
    drop, clock = make([sock], banned)
    drop.start()
    drop.refused_banned("10.0.0.3", 0.0)
    drop.refused_banned("10.0.0.3", 11.0)  # new window
    drop.refused_banned("10.0.0.3", 12.0)
    assert not drop.dropped
    drop.refused_banned("10.0.0.3", 13.0)
    assert drop.dropped == {"10.0.0.3"}
    assert attached == [filter_program(["10.0.0.3"])]
    assert any(e.get("action") == "kernel_drop" for e in log_events)
    banned.clear()
    clock.advance(5)
    assert not drop.dropped
    assert sock.calls == [(SO_DETACH_FILTER, 0)]
    drop.stop()
    assert not clock.getDelayedCalls()


def test_gives_up_when_filters_are_unavailable(log_events: list[dict[str, Any]]) -> None:
    """If attaching fails, it is logged once and user-space refusal goes on."""
    drop, _ = make([FakeSocket(fail=True)], {"10.0.0.3"})
    for _ in range(10):
        drop.refused_banned("10.0.0.3", 1.0)
    assert not drop.dropped
    assert [e.get("action") for e in log_events if e.get("event") == "ban"].count(
        "kernel_drop_unavailable") == 1


def test_option_numbers() -> None:
    """The Linux option numbers (Python's socket module lacks them)."""
    assert (SO_ATTACH_FILTER, SO_DETACH_FILTER) == (26, 27)


def test_window_is_half_open_and_the_filter_is_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    """Refusals count within [first, first + window): the third at exactly
    +window starts a new count; and no more than MAX_ADDRESSES sources are
    ever filtered (the rest are refused in user space, as before)."""
    monkeypatch.setattr("superd.access.kerneldrop.attach_program", lambda sock, program: None)
    monkeypatch.setattr("superd.access.kerneldrop.MAX_ADDRESSES", 2)
    hosts = {"10.0.0.1", "10.0.0.2", "10.0.0.3"}
    drop, _ = make([FakeSocket()], set(hosts))
    for at in (0.0, 5.0, 10.0):
        drop.refused_banned("10.0.0.1", at)
    assert not drop.dropped
    for host in sorted(hosts):
        for at in (20.0, 20.5, 21.0):
            drop.refused_banned(host, at)
    assert drop.dropped == {"10.0.0.1", "10.0.0.2"}


@linux
@pytest.mark.parametrize("network, dropped", [
    ("::/64", True),             # whole words compared
    ("0:0:0:1::/64", False),
    ("::/127", True),            # a partial last word, masked
    ("::2/127", False),
    ("::/48", True),             # a partial word in the middle
    ("0:0:1::/48", False),
    ("2001:db8::/32", False),
])
def test_program_drops_networks(network: str, dropped: bool) -> None:
    """IPv6 network bans are matched by prefix in the kernel: ::1 (the only
    loopback IPv6 source) is dropped exactly by the networks holding it."""
    server = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
    server.bind(("::1", 0))
    try:
        attach_program(server, filter_program([network, "2001:db8::1", "10.0.0.1"]))
        assert udp_reaches(server, "::1") is not dropped
    finally:
        server.close()


def test_banned_network_counted_as_one(tmp_path: Path) -> None:
    """Refusals of many addresses of a banned /64 count towards one kernel
    drop of the /64 (the access layer reports the ban's own key), released
    when the ban is lifted."""
    access = make_access(tmp_path)
    access.bans.ban("2001:db8:1:2::/64", 5, "trap")
    drop = KernelDrop(Clock(), list, access.bans.is_banned, threshold=3)
    access.kernel_drop = drop
    factory = AccessControlledFactory(service(), RecordingHandler(), access)
    for n in range(1, 4):
        assert connect(factory, f"2001:db8:1:2::{n}")[0] is None
    assert drop.dropped == {"2001:db8:1:2::/64"}
    access.bans.unban("2001:db8:1:2::/64")
    drop.maintain()
    assert drop.dropped == set()
    access.stopService()
