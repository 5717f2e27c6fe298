"""Tests for superd.observe.events with UNIX peers: ``from=uid:N`` and credential fields."""

from __future__ import annotations

from typing import Any

from superd.core.session import Peer, UnixPeer
from superd.observe import events

from .servicelog.configs import service

PEER = UnixPeer.of(1000, 100, 4242, (), "/run/app.sock")


def test_start_and_fail_lines_show_the_uid(log_events: list[dict[str, Any]]) -> None:
    """xinetd's lines keep their shape with ``from=uid:N``; the structured
    events carry the peer's uid, gid and pid."""
    svc = service("app", None)
    flags = frozenset({"PID", "HOST"})
    assert events.start_line("app", flags, 77, PEER) == "START: app pid=77 from=uid:1000"
    assert events.fail_line("app", flags, "credentials", PEER) == (
        "FAIL: app credentials from=uid:1000")
    events.emit_start(svc, 77, PEER)
    events.emit_fail(svc, events.REASON_CREDENTIALS, PEER)
    for event in log_events:
        assert event["peer_host"] == "uid:1000"
        assert (event["peer_uid"], event["peer_gid"], event["peer_pid"]) == (1000, 100, 4242)
    assert [e["event"] for e in log_events] == ["start", "refuse"]


def test_ip_peers_carry_no_credential_fields(log_events: list[dict[str, Any]]) -> None:
    """Only a UNIX peer's events have peer_uid/peer_gid/peer_pid."""
    events.emit_fail(service("app", None), events.REASON_ADDRESS, Peer("192.0.2.7", 1))
    (event,) = log_events
    assert not {"peer_uid", "peer_gid", "peer_pid"} & event.keys()
