"""Tests for ``superd.access.times``: access_times in local time."""

from __future__ import annotations

import time

import pytest

from superd.access.times import TimePolicy, inside
from superd.config.model import TimeInterval
from superd.core.session import Peer


def at(hour: int, minute: int) -> float:
    """Seconds since the epoch of HH:MM on 2026-11-29, UTC used as local."""
    return 1_795_910_400.0 + hour * 3600 + minute * 60 + 30


@pytest.mark.parametrize(
    ("intervals", "hour", "minute", "allowed"),
    [
        ([(8 * 60, 17 * 60)], 8, 0, True),  # inclusive start
        ([(8 * 60, 17 * 60)], 17, 0, True),  # inclusive end (the whole minute)
        ([(8 * 60, 17 * 60)], 17, 1, False),
        ([(8 * 60, 17 * 60)], 7, 59, False),
        ([(22 * 60, 6 * 60)], 23, 30, True),  # wraps midnight
        ([(22 * 60, 6 * 60)], 3, 0, True),
        ([(22 * 60, 6 * 60)], 12, 0, False),
        ([(22 * 60, 6 * 60)], 22, 0, True),  # wrapping: inclusive start
        ([(22 * 60, 6 * 60)], 21, 59, False),
        ([(22 * 60, 6 * 60)], 6, 0, True),  # wrapping: inclusive end
        ([(22 * 60, 6 * 60)], 6, 1, False),
        ([(20 * 60, 24 * 60)], 23, 59, True),  # 24:00
        ([(0, 24 * 60)], 0, 0, True),
        ([(1 * 60, 2 * 60), (5 * 60, 6 * 60)], 5, 30, True),
        ([(1 * 60, 2 * 60), (5 * 60, 6 * 60)], 3, 0, False),
    ],
)
def test_windows(intervals: list[tuple[int, int]], hour: int, minute: int,
                 allowed: bool) -> None:
    """Inclusive minute bounds, 24:00 and wrap-around intervals."""
    policy = TimePolicy([TimeInterval(s, e) for s, e in intervals], time.gmtime)
    decision = policy.check(Peer("1.2.3.4", 1), at(hour, minute))
    assert decision.allowed is allowed
    if not allowed:
        assert decision.reason == "time"


def test_inside_without_intervals_is_false() -> None:
    """``inside`` with no intervals admits nothing (policies are only built when set)."""
    assert not inside(10, [])


def test_local_time_is_used() -> None:
    """The injected localtime converts the clock's seconds."""
    seen: list[float] = []

    def localtime(now: float) -> time.struct_time:
        seen.append(now)
        return time.gmtime(at(9, 0))

    policy = TimePolicy([TimeInterval(9 * 60, 9 * 60)], localtime)
    assert policy.check(Peer("1.2.3.4", 1), 42.0).allowed
    assert seen == [42.0]
