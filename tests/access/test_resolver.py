"""Tests for ``superd.access.resolver``: confirmed names, cached and time-boxed."""

from __future__ import annotations

import socket
from typing import Any

import pytest
from twisted.internet.defer import Deferred
from twisted.internet.task import Clock

from superd.access.resolver import UNKNOWN_NAMES, HostNames, NameResolver, lookup_names


class Runs:
    """Collects lookups instead of running them in a thread."""

    def __init__(self) -> None:
        self.calls: list[Any] = []
        self.results: list[Deferred[HostNames]] = []

    def __call__(self, call: Any) -> Deferred[HostNames]:
        self.calls.append(call)
        d: Deferred[HostNames] = Deferred()
        self.results.append(d)
        return d


def collect(d: Deferred[HostNames]) -> list[HostNames]:
    out: list[HostNames] = []
    d.addCallback(out.append)
    return out


def test_concurrent_callers_share_one_lookup_and_the_cache_expires() -> None:
    """Two waiters, one lookup; the answer is cached for the TTL."""
    clock, runs = Clock(), Runs()
    resolver = NameResolver(clock, runs, ttl=100)
    first, second = collect(resolver.names("1.2.3.4")), collect(resolver.names("1.2.3.4"))
    assert len(runs.calls) == 1
    found = HostNames(frozenset({"a.example.com"}))
    runs.results[0].callback(found)
    assert first == second == [found]
    assert resolver.cached("1.2.3.4") == found
    clock.advance(100)
    assert resolver.cached("1.2.3.4") is None


def test_failures_and_timeouts_give_unknown_names() -> None:
    """A lookup that fails or takes too long answers 'no names' (negative TTL)."""
    clock, runs = Clock(), Runs()
    resolver = NameResolver(clock, runs, timeout=5, negative_ttl=10)
    slow = collect(resolver.names("1.2.3.4"))
    clock.advance(5)
    assert slow == [UNKNOWN_NAMES]
    failing = collect(resolver.names("5.6.7.8"))
    runs.results[1].errback(OSError("boom"))
    assert failing == [UNKNOWN_NAMES]
    assert resolver.cached("5.6.7.8") == UNKNOWN_NAMES
    clock.advance(10)
    assert resolver.cached("5.6.7.8") is None


def test_cache_is_bounded() -> None:
    """The cache holds at most max_entries addresses."""
    clock, runs = Clock(), Runs()
    resolver = NameResolver(clock, runs, max_entries=2)
    for i in range(3):
        resolver.names(f"10.0.0.{i}")
        runs.results[i].callback(UNKNOWN_NAMES)
    assert resolver.cached("10.0.0.0") is None
    assert resolver.cached("10.0.0.2") is not None


def test_lookup_confirms_forward(monkeypatch: pytest.MonkeyPatch) -> None:
    """Only names whose forward lookup gives the address back count."""
    monkeypatch.setattr(socket, "gethostbyaddr",
                        lambda host: ("Good.Example.com.", ["liar.example.org"], [host]))

    def getaddrinfo(name: str, port: Any) -> list[Any]:
        address = "1.2.3.4" if name == "good.example.com" else "9.9.9.9"
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (address, 0))]

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    assert lookup_names("1.2.3.4") == HostNames(frozenset({"good.example.com"}))
    assert lookup_names("5.5.5.5") == HostNames(frozenset(), mismatch=True)


def test_lookup_without_reverse_name(monkeypatch: pytest.MonkeyPatch) -> None:
    """No PTR record: unknown, not a mismatch."""
    def fail(host: str) -> Any:
        raise socket.herror(1, "Unknown host")
    monkeypatch.setattr(socket, "gethostbyaddr", fail)
    assert lookup_names("1.2.3.4") == UNKNOWN_NAMES


def test_localhost_through_nsswitch() -> None:
    """The real lookup honours /etc/hosts: 127.0.0.1 is confirmed as localhost."""
    found = lookup_names("127.0.0.1")
    if not found.known:
        pytest.skip("this machine has no confirmed name for 127.0.0.1")
    assert "localhost" in found.names


def test_too_many_pending_lookups_answer_unknown() -> None:
    """Beyond max_pending distinct lookups, new sources get 'no names' at once."""
    clock, runs = Clock(), Runs()
    resolver = NameResolver(clock, runs, max_pending=2)
    resolver.names("10.0.0.1")
    resolver.names("10.0.0.2")
    assert collect(resolver.names("10.0.0.3")) == [UNKNOWN_NAMES]
    assert resolver.cached("10.0.0.3") is None
    assert len(runs.calls) == 2
