"""Tests for ``superd.access.pipeline``: order, first denial, waiting, failures."""

from __future__ import annotations

from typing import Any

from twisted.internet.defer import Deferred

from superd.access.decision import ALLOW, Decision, MaybeDeferred, deny
from superd.access.pipeline import run_policies
from superd.core.session import Peer

PEER = Peer("10.0.0.1", 1)


class Step:
    """A policy that records calls and answers as told."""

    def __init__(self, name: str, answer: Any, calls: list[str]) -> None:
        self.reason = name
        self.answer = answer
        self.calls = calls

    def check(self, peer: Peer, now: float) -> MaybeDeferred:
        self.calls.append(self.reason)
        if isinstance(self.answer, Exception):
            raise self.answer
        return self.answer  # type: ignore[no-any-return]


def test_first_denial_stops_the_rest() -> None:
    """Policies run in order and stop at the first denial."""
    calls: list[str] = []
    steps = [Step("a", ALLOW, calls), Step("b", deny("time"), calls),
             Step("c", ALLOW, calls)]
    assert run_policies(steps, PEER, lambda: 0.0) == deny("time")
    assert calls == ["a", "b"]


def test_waiting_policy_suspends_the_rest() -> None:
    """After a Deferred answer, later policies run only once it fires."""
    calls: list[str] = []
    pending: Deferred[Decision] = Deferred()
    steps = [Step("a", pending, calls), Step("b", ALLOW, calls),
             Step("c", deny("load"), calls)]
    outcome = run_policies(steps, PEER, lambda: 0.0)
    assert isinstance(outcome, Deferred) and calls == ["a"]
    results: list[Decision] = []
    outcome.addCallback(results.append)
    pending.callback(ALLOW)
    assert results == [deny("load")] and calls == ["a", "b", "c"]


def test_failures_deny_with_the_policy_reason(log_events: list[dict[str, Any]]) -> None:
    """A raising policy or a failing Deferred denies with its reason word."""
    calls: list[str] = []
    crash = run_policies([Step("load", RuntimeError("x"), calls)], PEER, lambda: 0.0)
    assert crash == Decision(False, "load", "policy error")
    failing: Deferred[Decision] = Deferred()
    outcome = run_policies([Step("address", failing, calls)], PEER, lambda: 0.0)
    results: list[Decision] = []
    outcome.addCallback(results.append)  # type: ignore[union-attr]
    failing.errback(RuntimeError("lookup broke"))
    assert results == [Decision(False, "address", "policy error")]
    assert sum(e.get("event") == "policy_error" for e in log_events) == 2
