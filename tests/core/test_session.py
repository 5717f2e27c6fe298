"""Tests for superd.core.session: a session's end, and ending it early."""

from __future__ import annotations

from superd.core.session import Peer, Session


def session() -> Session:
    return Session("svc", Peer("10.0.0.1", 4000), None, 0.0)


def test_terminate_runs_the_latest_terminator_once_and_records_why() -> None:
    """terminate() runs what the latest server registered, once, and keeps
    the first reason; the session ends only when that server ends it."""
    ran: list[str] = []
    s = session()
    s.serve_with(lambda: ran.append("connection"))
    s.serve_with(lambda: ran.append("child"))  # a child took the session over
    assert s.terminate("banned") is True
    assert (ran, s.end_reason, s.ended) == (["child"], "banned", False)
    assert s.terminate("reconfigured") is False  # already being ended
    assert (ran, s.end_reason) == (["child"], "banned")
    s.end()
    assert s.ended and s.terminate("banned") is False and ran == ["child"]


def test_terminate_without_a_terminator_or_after_the_end_does_nothing() -> None:
    """A session nothing serves yet, or one that has ended, is not ended
    again and gets no reason."""
    s = session()
    assert s.terminate("banned") is False and s.end_reason is None
    ran: list[int] = []
    s.serve_with(lambda: ran.append(1))
    s.end()
    assert s.terminate("banned") is False
    assert (ran, s.end_reason) == ([], None)


def test_parse_host_accepts_ip_addresses_only() -> None:
    """Addresses a person types are canonicalised as superd spells them
    everywhere, IPv6 networks (a sensor's bans under v6_source_prefix) as
    their ban key; anything else is a ValueError naming it."""
    from superd.core.session import parse_host

    assert parse_host("::ffff:10.0.0.3") == "10.0.0.3"
    assert parse_host("fe80::1%eth0") == "fe80::1"
    assert parse_host("2001:DB8::0:1") == "2001:db8::1"
    assert parse_host("2001:DB8:1:2:0:0:0:5/64") == "2001:db8:1:2::/64"
    for network in ("10.0.0.0/8", "2001:db8::/999"):
        try:
            parse_host(network)
        except ValueError as e:
            assert str(e).startswith("not an IP")
        else:
            raise AssertionError(f"{network!r} accepted")
    for junk in ("example.com", "10.0.0.256", ""):
        try:
            parse_host(junk)
        except ValueError as e:
            assert str(e) == f"not an IP address: {junk!r}"
        else:
            raise AssertionError(f"{junk!r} accepted")
