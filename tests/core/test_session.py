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
