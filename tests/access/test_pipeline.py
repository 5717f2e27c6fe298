"""Tests for ``superd.access.pipeline``: order, first denial, waiting, failures."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from twisted.internet.defer import Deferred

from superd.access.decision import ALLOW, Decision, MaybeDeferred, deny
from superd.access.hostsaccess import HostsAccessPolicy
from superd.access.pipeline import BANNED, BanPolicy, batch_policies, run_policies
from superd.core.session import Peer
from tests.access.helpers import make_access

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


class Settled(Step):
    """A policy that says whether it allows everyone (or raises)."""

    def __init__(self, name: str, everyone: Any, calls: list[str]) -> None:
        super().__init__(name, ALLOW, calls)
        self.everyone = everyone

    def allows_everyone(self) -> bool:
        if isinstance(self.everyone, Exception):
            raise self.everyone
        return bool(self.everyone)


def test_a_batch_leaves_out_the_policies_that_allow_everyone() -> None:
    """Only a policy whose allows_everyone() is true is left out of a batch;
    one without the method, one that says no and one that raises (its check
    then fails and denies as usual) all stay, in order."""
    calls: list[str] = []
    plain = Step("plain", ALLOW, calls)
    everyone = Settled("everyone", True, calls)
    someone = Settled("someone", False, calls)
    broken = Settled("broken", RuntimeError("x"), calls)
    assert batch_policies([plain, everyone, someone, broken]) == [plain, someone, broken]
    assert batch_policies([everyone]) == []
    assert calls == []  # no check ran


def test_ban_policy_allows_everyone_only_while_nothing_is_banned(tmp_path: Path) -> None:
    """The ban list empty: nobody is refused; one ban in force: every batch
    asks again per connection."""
    access = make_access(tmp_path)
    policy = BanPolicy(access.bans)
    assert policy.allows_everyone()
    access.bans.ban("10.0.0.9", 60, "trap")
    assert not policy.allows_everyone()
    assert batch_policies([policy]) == [policy]
    assert policy.check(Peer("10.0.0.9", 1), 0.0) is BANNED
    access.stopService()


def test_hosts_policy_allows_everyone_while_both_files_are_empty(tmp_path: Path) -> None:
    """hosts.allow and hosts.deny with comments only: nobody is refused; a rule
    written since the last batch is seen by the next one."""
    access = make_access(tmp_path)
    (tmp_path / "hosts.allow").write_text("# nothing\n")
    assert access.hosts is not None
    policy = HostsAccessPolicy("svc", access.hosts)
    assert policy.allows_everyone()
    with open(tmp_path / "hosts.deny", "a") as f:
        f.write("svc: 10.0.0.9\n")
    assert not policy.allows_everyone()
    assert policy.check(Peer("10.0.0.9", 1), 0.0) == deny("libwrap", "libwrap=svc")
    access.stopService()
