"""Tests for ``superd.access.loadavg``: max_load from /proc/loadavg."""

from __future__ import annotations

from pathlib import Path

from superd.access.loadavg import CachedLoad, LoadPolicy, read_loadavg
from superd.core.session import Peer


def test_read_loadavg(tmp_path: Path) -> None:
    """The first field of /proc/loadavg is the one-minute load."""
    path = tmp_path / "loadavg"
    path.write_text("2.50 1.00 0.50 1/123 4567\n")
    assert read_loadavg(str(path)) == 2.5


def test_policy_refuses_at_or_above_max_and_reads_once_a_second() -> None:
    """Load >= max_load refuses with ``load``; the file is read at most once a second."""
    readings = [1.0, 3.0]
    calls: list[int] = []

    def reader() -> float:
        calls.append(1)
        return readings[0]

    policy = LoadPolicy(2.0, CachedLoad(reader))
    assert policy.check(Peer("1.1.1.1", 1), 100.0).allowed
    readings[0] = 3.0
    assert policy.check(Peer("1.1.1.1", 1), 100.5).allowed  # cached
    decision = policy.check(Peer("1.1.1.1", 1), 101.0)
    assert (decision.allowed, decision.reason) == (False, "load")
    assert len(calls) == 2
    readings[0] = 2.0
    assert not policy.check(Peer("1.1.1.1", 1), 102.0).allowed  # equal refuses
