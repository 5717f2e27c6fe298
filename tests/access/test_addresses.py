"""Tests for ``superd.access.addresses``: best-match only_from/no_access."""

from __future__ import annotations

import ipaddress
import random
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st
from twisted.internet.defer import Deferred, succeed

from superd.access import addresses
from superd.access.addresses import AddressPolicy, AddressRules
from superd.access.decision import Decision
from superd.access.pipeline import policies_for
from superd.access.resolver import HostNames
from superd.config.model import AddressKind, AddressSpec
from superd.core.session import Peer
from tests.access.helpers import make_access, service, specs


def decide(only_from: tuple[str, ...] | None, no_access: tuple[str, ...],
           host: str) -> bool | None:
    rules = AddressRules(None if only_from is None else specs(*only_from),
                         specs(*no_access))
    return rules.decide(host)


@pytest.mark.parametrize(
    ("only_from", "no_access", "host", "allowed"),
    [
        # Neither list: everyone.
        (None, (), "10.1.2.3", True),
        # only_from written empty: nobody.
        ((), (), "10.1.2.3", False),
        # xinetd's trailing-zero wildcard: 127.0.0.0 is 127/8 (the seed's form).
        (("127.0.0.0",), (), "127.0.0.3", True),
        (("192.168.0.0",), (), "192.169.0.1", False),
        # The more specific entry wins, whichever list it is in.
        (("10.0.0.0/8",), ("10.0.0.5",), "10.0.0.5", False),
        (("10.0.0.0/8",), ("10.0.0.5",), "10.0.0.6", True),
        (("10.0.0.5",), ("10.0.0.0/8",), "10.0.0.5", True),
        (("10.0.0.5",), ("10.0.0.0/8",), "10.0.0.6", False),
        (("10.0.0.0/8",), ("10.1.0.0/16",), "10.1.2.3", False),
        (("10.1.2.0/24",), ("10.1.0.0/16",), "10.1.2.3", True),
        # A tie (same prefix in both lists) denies.
        (("10.0.0.0/8",), ("10.0.0.0/8",), "10.9.9.9", False),
        (("10.0.0.5",), ("10.0.0.5/32",), "10.0.0.5", False),
        # no_access alone.
        (None, ("10.0.0.0/8",), "10.2.3.4", False),
        (None, ("10.0.0.0/8",), "11.2.3.4", True),
        # IPv6: /128 works (xinetd never matches it), ::/0 is every IPv6 peer.
        (("::1/128",), (), "::1", True),
        (("::1/128",), (), "::2", False),
        (("::/0",), (), "2001:db8::1", True),
        (("::/0",), (), "127.0.0.1", False),
        (("fe80::/10",), ("fe80::1",), "fe80::1", False),
        (("fe80::/10",), ("fe80::1",), "fe80::2", True),
        # IPv4 entries never match IPv6 peers and vice versa.
        (("0.0.0.0/0",), (), "::1", False),
        # v4-mapped entries are IPv4 entries.
        (("::ffff:127.0.0.0/104",), (), "127.0.0.9", True),
        # Factorized entries.
        (("10.0.{1,2}",), (), "10.0.2.7", True),
        (("10.0.{1,2}",), (), "10.0.3.7", False),
    ],
)
def test_precedence_table(only_from: tuple[str, ...] | None,
                          no_access: tuple[str, ...], host: str,
                          allowed: bool) -> None:
    """The most specific matching entry decides; a tie denies."""
    assert decide(only_from, no_access, host) is allowed


def test_v4_mapped_peer_is_ipv4() -> None:
    """A peer written ::ffff:a.b.c.d is matched as a.b.c.d (via Peer)."""
    peer = Peer.from_address(("::ffff:10.0.0.5", 1))
    assert decide(("10.0.0.0/8",), (), peer.host) is True
    assert decide(("::/0",), (), peer.host) is False


def test_non_ip_peer() -> None:
    """A peer with no IP address matches no entry."""
    assert decide(("10.0.0.0/8",), (), "unix-socket") is False
    assert decide(None, ("10.0.0.0/8",), "unix-socket") is True


def _random_networks(count: int, seed: int) -> list[str]:
    rng = random.Random(seed)
    out = []
    for _ in range(count):
        length = rng.choice((16, 20, 24, 28, 32))
        net = ipaddress.IPv4Network((rng.getrandbits(32), length), strict=False)
        out.append(str(net))
    return out


def _linear(table: list[tuple[int, int, int]], host: str) -> bool:
    """Reference implementation: scan every entry, keep the best."""
    address = int(ipaddress.IPv4Address(host))
    best, flags = -1, 0
    for network, length, flag in table:
        if address >> (32 - length) != network >> (32 - length):
            continue
        if length > best:
            best, flags = length, flag
        elif length == best:
            flags |= flag
    return flags == 1


def test_ten_thousand_entries_agree_with_a_linear_scan() -> None:
    """With 10,000 entries per list, answers equal a linear best-match scan."""
    only_from = _random_networks(10_000, 1)
    no_access = _random_networks(10_000, 2)
    rules = AddressRules(specs(*only_from), specs(*no_access))
    rng = random.Random(3)
    table = [(int(n.network_address), n.prefixlen, flag)
             for texts, flag in ((only_from, 1), (no_access, 2))
             for n in map(ipaddress.IPv4Network, texts)]
    hosts = [str(ipaddress.ip_network(rng.choice(only_from + no_access))[-1])
             for _ in range(150)]
    hosts += [str(ipaddress.IPv4Address(rng.getrandbits(32))) for _ in range(50)]
    for host in hosts:
        assert rules.decide(host) is _linear(table, host), host


HOST = AddressSpec("good.example.com", AddressKind.HOST, name="good.example.com")
DOMAIN = AddressSpec(".example.com", AddressKind.DOMAIN, name="example.com")
EVIL = AddressSpec(".evil.example.com", AddressKind.DOMAIN, name="evil.example.com")


def names(*found: str) -> HostNames:
    return HostNames(frozenset(found))


def test_names_needed_only_when_numbers_cannot_decide() -> None:
    """Numeric entries alone decide whenever names could not change the answer."""
    rules = AddressRules(specs("10.0.0.0/8"), (DOMAIN,))
    assert rules.decide("11.0.0.1") is False  # only_from has no names
    assert rules.decide("10.0.0.1") is None  # a .domain outranks /8
    rules = AddressRules((DOMAIN,), specs("10.0.0.5"))
    assert rules.decide("10.0.0.5") is False  # an exact address outranks names
    rules = AddressRules(specs("10.0.0.0/8"), ())
    assert rules.needs_names is False


def test_name_ranks() -> None:
    """Host names rank with exact addresses, longer domains above shorter."""
    rules = AddressRules((DOMAIN,), (EVIL,))
    assert rules.decide("1.2.3.4", names("a.example.com")) is True
    assert rules.decide("1.2.3.4", names("x.evil.example.com")) is False
    assert rules.decide("1.2.3.4", names("example.org")) is False
    rules = AddressRules((HOST,), (DOMAIN,))
    assert rules.decide("1.2.3.4", names("good.example.com")) is True
    rules = AddressRules(specs("1.2.3.4"), (HOST,))
    assert rules.decide("1.2.3.4", HostNames()) is True
    assert rules.decide("1.2.3.4", names("good.example.com")) is False  # tie


def test_names_tied_in_rank_deny() -> None:
    """A host whose names match both lists at the same rank is denied,
    whichever name is looked at last."""
    # Eight aliases: a set's iteration order varies with the hash seed, so
    # some of these pairs put the allowed name last whatever the seed.
    aliases = [f"alias{k}.example.org" for k in range(8)]
    rules = AddressRules((HOST,), tuple(
        AddressSpec(a, AddressKind.HOST, name=a) for a in aliases))
    assert rules.decide("1.2.3.4", names("good.example.com")) is True
    for alias in aliases:
        assert rules.decide("1.2.3.4", names("good.example.com", alias)) is False
    other = AddressSpec(".example.org", AddressKind.DOMAIN, name="example.org")
    rules = AddressRules((DOMAIN,), (other,))
    assert rules.decide("1.2.3.4", names("a.example.com", "b.example.org")) is False


def test_domain_suffix_is_label_aligned() -> None:
    """``.example.com`` does not match ``badexample.com``."""
    rules = AddressRules((DOMAIN,), ())
    assert rules.decide("1.2.3.4", names("badexample.com")) is False
    assert rules.decide("1.2.3.4", names("x.example.com.example.com")) is True


class FakeResolver:
    """Answers lookups when told to."""

    def __init__(self) -> None:
        self.pending: dict[str, Deferred[HostNames]] = {}
        self.cache: dict[str, HostNames] = {}

    def cached(self, host: str) -> HostNames | None:
        return self.cache.get(host)

    def names(self, host: str) -> Deferred[HostNames]:
        if host in self.cache:
            return succeed(self.cache[host])
        d: Deferred[HostNames] = Deferred()
        self.pending[host] = d
        return d


def test_policy_waits_for_names() -> None:
    """The policy returns a Deferred only when names are needed."""
    resolver = FakeResolver()
    policy = AddressPolicy(AddressRules((DOMAIN,), ()), resolver)  # type: ignore[arg-type]
    outcome = policy.check(Peer("1.2.3.4", 1), 0.0)
    assert isinstance(outcome, Deferred)
    results: list[Decision] = []
    outcome.addCallback(results.append)
    resolver.pending["1.2.3.4"].callback(names("a.example.com"))
    assert results[0].allowed
    resolver.cache["5.6.7.8"] = names("x.example.org")
    cached = policy.check(Peer("5.6.7.8", 1), 0.0)
    assert isinstance(cached, Decision) and cached.reason == "address"


class CountingRules(AddressRules):
    """AddressRules that count the lookups the policy makes."""

    lookups = 0

    def decide(self, host: str, names: HostNames | None = None) -> bool | None:
        self.lookups += 1
        return super().decide(host, names)


def test_numeric_verdicts_are_remembered_per_source() -> None:
    """A source decided by the numeric entries is looked up once; the same
    answers come back without a lookup, whatever the port."""
    rules = CountingRules(specs("10.0.0.0/8"), specs("10.0.0.5"))
    policy = AddressPolicy(rules, None)
    first = [policy.check(Peer(host, 1), 0.0) for host in ("10.1.1.1", "10.0.0.5", "11.0.0.1")]
    assert [d.allowed for d in first] == [True, False, False]  # type: ignore[union-attr]
    assert rules.lookups == 3
    again = [policy.check(Peer(host, 2), 0.0) for host in ("10.1.1.1", "10.0.0.5", "11.0.0.1")]
    assert again == first and rules.lookups == 3


def test_verdicts_that_need_names_are_never_remembered() -> None:
    """Where host names decide, every connection asks the resolver again (a
    name's addresses change; its cache is the resolver's to keep)."""
    resolver = FakeResolver()
    rules = CountingRules(specs("10.0.0.0/8"), (DOMAIN,))
    policy = AddressPolicy(rules, resolver)  # type: ignore[arg-type]
    resolver.cache["10.0.0.1"] = names("a.example.com")
    assert policy.check(Peer("10.0.0.1", 1), 0.0).allowed is False  # type: ignore[union-attr]
    resolver.cache["10.0.0.1"] = names("a.example.org")
    assert policy.check(Peer("10.0.0.1", 2), 0.0).allowed is True  # type: ignore[union-attr]
    assert policy.check(Peer("11.0.0.1", 1), 0.0).allowed is False  # type: ignore[union-attr]
    assert policy._verdicts == {"11.0.0.1": policy.check(Peer("11.0.0.1", 1), 0.0)}


def test_remembered_verdicts_are_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    """Past VERDICT_CACHE sources the memory starts again: never more than
    the bound, every answer still right."""
    monkeypatch.setattr(addresses, "VERDICT_CACHE", 16)
    policy = AddressPolicy(AddressRules(specs("10.0.0.0/24"), ()), None)
    for i in range(100):
        host = f"10.0.{i % 2}.{i}"
        assert policy.check(Peer(host, 1), 0.0).allowed is (i % 2 == 0)  # type: ignore[union-attr]
        assert len(policy._verdicts) <= 16


def test_a_reload_gets_new_verdicts(tmp_path: Path) -> None:
    """Verdicts belong to the policy of one loaded configuration: after a
    reload that changes the lists, the same source gets the new answer."""
    access = make_access(tmp_path)
    before = service(only_from=specs("10.0.0.0/8"))
    policy = next(p for p in policies_for(before, access, sessions=True)
                  if isinstance(p, AddressPolicy))
    assert policy.check(Peer("10.0.0.1", 1), 0.0).allowed  # type: ignore[union-attr]
    after = service(only_from=specs("192.0.2.0/24"))
    policy = next(p for p in policies_for(after, access, sessions=True)
                  if isinstance(p, AddressPolicy))
    assert not policy.check(Peer("10.0.0.1", 1), 0.0).allowed  # type: ignore[union-attr]
    access.stopService()


@given(st.lists(st.text(max_size=30), max_size=6),
       st.lists(st.text(max_size=30), max_size=6),
       st.one_of(st.ip_addresses().map(str), st.text(max_size=40)),
       st.frozensets(st.text(max_size=20), max_size=3))
def test_matcher_never_raises(only: list[str], deny: list[str], host: str,
                              found: frozenset[str]) -> None:
    """Any parsed entries and any peer text give an answer, never an exception."""
    def parsed(texts: list[str]) -> tuple[AddressSpec, ...]:
        out: list[AddressSpec] = []
        for text in texts:
            try:
                out.extend(specs(text))
            except ValueError:
                pass
        return tuple(out)
    rules = AddressRules(parsed(only), parsed(deny))
    assert rules.decide(host) in (True, False, None)
    assert rules.decide(host, HostNames(found)) in (True, False)
