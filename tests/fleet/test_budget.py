"""superd.fleet.budget: a token bucket for the shared ban channel."""

from __future__ import annotations

from twisted.internet.task import Clock

from superd.fleet.budget import MessageBudget


def budget(**kw: float) -> tuple[MessageBudget, Clock, list[tuple[int, int, float]]]:
    clock = Clock()
    reports: list[tuple[int, int, float]] = []
    return MessageBudget(clock, lambda *r: reports.append(r), **kw), clock, reports


def test_a_burst_then_the_rate() -> None:
    """A quiet budget admits a burst at once, then ``rate`` a second."""
    b, clock, _ = budget(rate=10, burst=100)
    assert sum(b.take() for _ in range(1000)) == 100
    clock.advance(1)
    assert sum(b.take() for _ in range(1000)) == 10
    clock.advance(1000)
    assert sum(b.take() for _ in range(1000)) == 100  # never more than a burst


def test_drops_and_malformed_are_reported_once_per_interval() -> None:
    """However many are dropped, one report per interval, with the counts."""
    b, clock, reports = budget(rate=1, burst=1, interval=10)
    for _ in range(50_000):
        b.take()
    b.bad()
    assert reports == []
    clock.advance(10)
    assert reports == [(49_999, 1, 10)]
    clock.advance(10)
    assert len(reports) == 1  # nothing new: no report
    b.bad()
    b.flush()  # at stop: what is left is reported at once
    assert reports[-1] == (0, 1, 10)
    assert not clock.getDelayedCalls()
