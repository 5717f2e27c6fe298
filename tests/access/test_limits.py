"""Tests for ``superd.access.limits``: instances, per_source and --limit."""

from __future__ import annotations

from twisted.internet.testing import MemoryReactorClock

from superd.access.limits import (
    GlobalLimitPolicy,
    InstancesPolicy,
    NetworkPerSourcePolicy,
    PerSourcePolicy,
    SessionCounter,
)
from superd.core.session import Peer, Session
from superd.proc.spawner import SpawnRequest
from tests.fakes import fake_processes


def session(host: str, service_id: str = "svc") -> Session:
    return Session(service_id, Peer(host, 1), None, 0.0)


def test_per_source_counts_live_sessions_per_source() -> None:
    """per_source 5: five live sessions from one source, the sixth refused."""
    counter = SessionCounter()
    policy = PerSourcePolicy("svc", 5, counter)
    live = []
    for _ in range(5):
        assert policy.check(Peer("10.0.0.1", 1), 0).allowed
        live.append(session("10.0.0.1"))
        counter.acquire(live[-1])
    refused = policy.check(Peer("10.0.0.1", 1), 0)
    assert (refused.allowed, refused.reason) == (False, "per_source_limit")
    assert policy.check(Peer("10.0.0.2", 1), 0).allowed
    live[0].end()
    live[0].end()  # idempotent: released once
    assert counter.from_source("svc", "10.0.0.1") == 4
    assert policy.check(Peer("10.0.0.1", 1), 0).allowed


def test_instances_counts_the_service_only() -> None:
    """instances 2 counts sessions of this service, not of others."""
    counter = SessionCounter()
    policy = InstancesPolicy("svc", 2, counter)
    counter.acquire(session("10.0.0.1", "other"))
    counter.acquire(session("10.0.0.1"))
    assert policy.check(Peer("10.0.0.9", 1), 0).allowed
    last = session("10.0.0.2")
    counter.acquire(last)
    assert policy.check(Peer("10.0.0.9", 1), 0).reason == "service_limit"
    last.end()
    assert counter.running("svc") == 1
    assert policy.check(Peer("10.0.0.9", 1), 0).allowed


def test_instances_zero_refuses_everything() -> None:
    """instances 0 admits nobody."""
    assert not InstancesPolicy("svc", 0, SessionCounter()).check(
        Peer("1.1.1.1", 1), 0).allowed


def test_global_limit_uses_running_children() -> None:
    """--limit N refuses while N children run."""
    processes, spawner = fake_processes(MemoryReactorClock())
    policy = GlobalLimitPolicy(2, processes)
    request = SpawnRequest("/bin/cat", ("cat",), {}, {0: 7})
    processes.spawn(request, "a", None)
    assert policy.check(Peer("1.1.1.1", 1), 0).allowed
    processes.spawn(request, "a", None)
    assert policy.check(Peer("1.1.1.1", 1), 0).reason == "process_limit"
    spawner.exit(1000, 0)
    assert policy.check(Peer("1.1.1.1", 1), 0).allowed


def test_when_idle_fires_when_the_last_session_of_any_service_ends() -> None:
    """when_idle (stop's drain) fires once no session of any service is live;
    at once when none is; a cancelled wait is forgotten."""
    counter = SessionCounter()
    assert counter.when_idle().called
    first, second = session("10.0.0.1", "a"), session("10.0.0.2", "b")
    counter.acquire(first)
    counter.acquire(second)
    assert counter.live() == 2
    idle, cancelled = counter.when_idle(), counter.when_idle()
    cancelled.cancel()
    cancelled.addErrback(lambda failure: None)
    first.end()
    assert not idle.called
    second.end()
    assert idle.called and counter.live() == 0


def test_sessions_count_under_their_block() -> None:
    """A session counts under its block (the id unless given), so two blocks
    sharing an id do not see each other's sessions."""
    counter = SessionCounter()
    assert session("10.0.0.1").block == "svc"
    counter.acquire(Session("svc", Peer("10.0.0.1", 1), None, 0.0, block="svc tcp/22 10.0.0.9"))
    assert counter.running("svc tcp/22 10.0.0.9") == 1
    assert counter.from_source("svc tcp/22 10.0.0.9", "10.0.0.1") == 1
    assert counter.running("svc") == 0
    assert InstancesPolicy("svc", 1, counter).check(Peer("10.0.0.1", 1), 0).allowed


def test_per_source_by_v6_prefix_across_a_slash_64() -> None:
    """v6_source_prefix 64, per_source 3: sessions from a hundred addresses
    of one /64 count as one source -- the fourth is refused whatever
    address it uses; another /64 and IPv4 sources are not affected; ending
    one frees a slot for any address of the /64."""
    counter = SessionCounter()
    policy = NetworkPerSourcePolicy("svc", 3, counter, v6_prefix=64)
    live = []
    for n in range(1, 101):
        peer = Peer(f"2001:db8:aa:bb:{n:x}::{n:x}", 1)
        if policy.check(peer, 0).allowed:
            live.append(Session("svc", peer, None, 0.0, source="2001:db8:aa:bb::/64"))
            counter.acquire(live[-1])
    assert len(live) == 3
    assert counter.from_source("svc", "2001:db8:aa:bb::/64") == 3
    assert policy.check(Peer("2001:db8:aa:bc::1", 1), 0).allowed
    assert policy.check(Peer("10.0.0.1", 1), 0).allowed
    live[1].end()
    assert policy.check(Peer("2001:db8:aa:bb:ffff:ffff:ffff:ffff", 1), 0).allowed


def test_per_source_default_counts_each_v6_address() -> None:
    """The default (128, as xinetd) counts every IPv6 address on its own."""
    counter = SessionCounter()
    policy = PerSourcePolicy("svc", 1, counter)
    counter.acquire(session("2001:db8::1"))
    assert not policy.check(Peer("2001:db8::1", 1), 0).allowed
    assert policy.check(Peer("2001:db8::2", 1), 0).allowed


def test_counter_keeps_live_sessions_oldest_first() -> None:
    """The counter lists live sessions in the order they were admitted and
    forgets each one when it ends (what a ban or a reload ends early)."""
    counter = SessionCounter()
    first, second, third = (Session("svc", Peer(f"10.0.0.{n}", 1), None, 0.0)
                            for n in (1, 2, 3))
    for s in (first, second, third):
        counter.acquire(s)
    assert counter.sessions() == (first, second, third)
    second.end()
    assert counter.sessions() == (first, third)
    assert counter.running("svc") == 2


def test_counter_finds_a_sources_sessions() -> None:
    """from_host lists one source's live sessions, of any block, and
    forgets them as they end."""
    counter = SessionCounter()
    a = Session("echo", Peer("10.0.0.1", 1), None, 0.0)
    b = Session("chargen", Peer("10.0.0.1", 2), None, 0.0)
    c = Session("echo", Peer("10.0.0.2", 3), None, 0.0)
    for s in (a, b, c):
        counter.acquire(s)
    assert counter.from_host("10.0.0.1") == (a, b)
    a.end()
    b.end()
    assert counter.from_host("10.0.0.1") == () and counter.from_host("10.0.0.2") == (c,)
    assert counter._by_host == {"10.0.0.2": {c: None}}
