"""Tests for ``superd.access.refusals``: FAIL lines that a flood cannot multiply."""

from __future__ import annotations

from typing import Any

from twisted.internet.task import Clock

from superd.access.decision import deny
from superd.access.refusals import RefusalLog
from superd.core.session import Peer
from tests.access.helpers import fail_lines, service

SVC = service(log_on_failure=frozenset({"HOST"}))
ADDRESS = deny("address")


def suppressed(events: list[dict[str, Any]]) -> list[tuple[str, int]]:
    return [(e["peer_host"], e["count"]) for e in events
            if e.get("event") == "refusals_suppressed"]


def test_burst_then_count_then_summary(log_events: list[dict[str, Any]]) -> None:
    """Five FAIL lines per source and reason a window, the rest summarised."""
    log = RefusalLog(burst=5, window=10)
    for _ in range(100):
        log.refused(SVC, Peer("10.0.0.3", 1), ADDRESS, 100.0)
    log.refused(SVC, Peer("10.0.0.4", 1), ADDRESS, 100.0)
    assert fail_lines(log_events) == (["FAIL: svc address from=10.0.0.3"] * 5
                                      + ["FAIL: svc address from=10.0.0.4"])
    assert suppressed(log_events) == []
    log.refused(SVC, Peer("10.0.0.3", 1), ADDRESS, 110.0)
    assert suppressed(log_events) == [("10.0.0.3", 95)]
    assert len(fail_lines(log_events)) == 7


def test_no_summary_when_nothing_was_suppressed(log_events: list[dict[str, Any]]) -> None:
    """A window whose refusals were all logged ends without a summary line."""
    log = RefusalLog(burst=5, window=10)
    for _ in range(3):
        log.refused(SVC, Peer("10.0.0.3", 1), ADDRESS, 100.0)
    log.refused(SVC, Peer("10.0.0.3", 1), ADDRESS, 110.0)  # a new window
    log.sweep(130.0)
    assert len(fail_lines(log_events)) == 4
    assert suppressed(log_events) == []


def test_sweep_summarises_quiet_sources(log_events: list[dict[str, Any]]) -> None:
    """A source that stops is summarised by the periodic sweep, and forgotten."""
    clock = Clock()
    log = RefusalLog(burst=1, window=10)
    log.start(clock)
    for _ in range(3):
        log.refused(SVC, Peer("10.0.0.3", 1), ADDRESS, clock.seconds())
    clock.advance(10)
    clock.advance(10)
    assert suppressed(log_events) == [("10.0.0.3", 2)]
    log.stop()
    assert not clock.getDelayedCalls()


def test_bounded_memory(log_events: list[dict[str, Any]]) -> None:
    """When max_keys sources are tracked, the table is summarised and cleared."""
    log = RefusalLog(burst=1, window=10, max_keys=3)
    for i in range(4):
        log.refused(SVC, Peer(f"10.0.0.{i}", 1), ADDRESS, 0.0)
    assert len(fail_lines(log_events)) == 4
    assert len(log._windows) == 1
