"""Tests for ``superd.access.rate``: xinetd's cps counter and log lines."""

from __future__ import annotations

from typing import Any

from twisted.internet.task import Clock

from superd.access.rate import ConnectionRate
from superd.config.model import CPS
from superd.core.session import Peer

PEER = Peer("10.0.0.1", 1)


def burst(rate: ConnectionRate, clock: Clock, count: int) -> list[bool]:
    return [rate.check(PEER, clock.seconds()).allowed for _ in range(count)]


def test_31st_in_one_second_deactivates_for_wait_seconds(
        log_events: list[dict[str, Any]]) -> None:
    """cps 30 10: 30 pass, the 31st is refused, everything is refused for 10 s."""
    clock = Clock()
    clock.advance(1000.2)
    rate = ConnectionRate("echo", CPS(30, 10), clock)
    assert burst(rate, clock, 31) == [True] * 30 + [False]
    assert rate.deactivated and rate.reactivates_at == 1010.2
    clock.advance(9.9)
    assert burst(rate, clock, 1) == [False]
    clock.advance(0.1)
    assert not rate.deactivated
    assert burst(rate, clock, 1) == [True]
    texts = [e["log_format"].format(**e) for e in log_events
             if e.get("event") == "limit"]
    assert texts == [
        "Deactivating service echo due to excessive incoming connections."
        "  Restarting in 10 seconds.",
        "Activating service echo",
    ]


def test_rate_is_averaged_over_a_window_of_max_seconds() -> None:
    """As xinetd: count // elapsed seconds inside a window of MAX seconds."""
    clock = Clock()
    rate = ConnectionRate("s", CPS(2, 4), clock)
    assert burst(rate, clock, 2) == [True, True]
    clock.advance(1)
    # elapsed 1 s: the 3rd connection gives 3 // 1 > 2.
    assert burst(rate, clock, 1) == [False]
    clock.advance(4)
    # Reactivated; the counter was not reset: 4 // 5 is fine, and after
    # the window of 2 s has passed a new window opens.
    assert burst(rate, clock, 1) == [True]


def test_new_window_after_max_seconds() -> None:
    """Once MAX seconds have passed since the window opened, counting restarts."""
    clock = Clock()
    rate = ConnectionRate("s", CPS(3, 10), clock)
    assert burst(rate, clock, 3) == [True] * 3
    clock.advance(3)
    assert burst(rate, clock, 3) == [True] * 3
    assert not rate.deactivated


def test_window_of_max_seconds_ends_exactly_at_max() -> None:
    """As xinetd (``diff < TIME_CONN_MAX`` counts on): MAX seconds after the
    window opened a new one opens, so three in its first second exceed 2."""
    clock = Clock()
    rate = ConnectionRate("s", CPS(2, 10), clock)
    assert burst(rate, clock, 2) == [True, True]
    clock.advance(2)
    assert burst(rate, clock, 3) == [True, True, False]


def test_zero_max_disables() -> None:
    """cps 0 never limits."""
    clock = Clock()
    rate = ConnectionRate("s", CPS(0, 10), clock)
    assert all(burst(rate, clock, 1000))


def test_stop_cancels_reactivation() -> None:
    """stop() leaves no pending timer behind."""
    clock = Clock()
    rate = ConnectionRate("s", CPS(1, 10), clock)
    burst(rate, clock, 3)
    assert clock.getDelayedCalls()
    rate.stop()
    assert not clock.getDelayedCalls()
