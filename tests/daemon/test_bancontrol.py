"""Tests for superd.daemon.bancontrol: bans through the running daemon's
control socket (``superd bans`` without ``--offline``)."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest
from twisted.internet.defer import succeed
from twisted.internet.testing import MemoryReactorClock, StringTransport

from superd.access.bans import BanList
from superd.access.banstore import BanStore, db_path
from superd.access.factory import AccessControlledFactory
from superd.config.model import Configuration
from superd.core.runtime import Runtime, RuntimeOptions
from superd.core.timestamps import rfc3339
from superd.daemon.operations import Operations
from superd.daemon.service import SuperdService, build_service
from tests.access.helpers import RecordingHandler, serve
from tests.builders import local_echo_service
from tests.fakes import make_parts


class Reactor(MemoryReactorClock):
    """Keeps the control socket's factory instead of listening."""

    def __init__(self) -> None:
        super().__init__()
        self.control: Any = None

    def listenUNIX(self, path: str, factory: Any, backlog: int = 50, mode: int = 0o666,
                   wantPID: bool = False) -> Any:
        self.control = factory
        return type("Port", (), {"stopListening": lambda self: None})()


def daemon(tmp_path: Path) -> SuperdService:
    """A started daemon whose bans live in ``tmp_path``'s database."""
    reactor = Reactor()
    reactor.advance(1_000_000)
    runtime = Runtime(reactor=reactor, options=RuntimeOptions(state_dir=str(tmp_path)))
    bans = BanList(BanStore(db_path(str(tmp_path))), reactor)
    config = Configuration(services=(local_echo_service(),))
    top = build_service(config, make_parts(runtime, bans=bans),
                        install_signal=lambda *a: None)
    Operations(top, lambda: succeed(config), environ={},
               install_signal=lambda *a: None).setServiceParent(top)
    top.privilegedStartService()
    top.startService()
    return top


def ask(top: SuperdService, request: dict[str, Any]) -> dict[str, Any]:
    """One request on the control socket; the daemon's JSON reply."""
    protocol = top.runtime.reactor.control.buildProtocol(None)  # type: ignore[attr-defined]
    transport = StringTransport()
    protocol.makeConnection(transport)
    protocol.dataReceived(json.dumps(request).encode() + b"\n")
    answer: dict[str, Any] = json.loads(transport.value())
    return answer


def test_ban_applies_persists_shares_logs_and_ends_sessions(
        tmp_path: Path, log_events: list[dict[str, Any]]) -> None:
    """``ban`` puts the address on the list in force at once, stores it,
    tells the fleet's listener, logs it as the operator's and ends the
    address's open sessions (and says how many)."""
    top = daemon(tmp_path)
    access = top.parts.access
    shared: list[tuple[str, float, str]] = []
    access.bans.listeners.append(lambda *ban: shared.append(ban))
    factory = AccessControlledFactory(top.configuration.services[0], RecordingHandler(),
                                      access)
    victim, bystander = serve(factory, "10.0.0.7"), serve(factory, "10.0.0.8")
    now = top.runtime.seconds()
    answer = ask(top, {"command": "ban", "host": "::ffff:10.0.0.7", "minutes": 10})
    assert answer == {"ok": True, "ended": 1, "ban": {
        "host": "10.0.0.7", "until": rfc3339(now + 600), "added": rfc3339(now),
        "service_id": "superd bans", "hits": 1, "remote": False}}
    assert access.bans.is_banned("10.0.0.7")
    stored = BanStore(db_path(str(tmp_path))).get("10.0.0.7")
    assert stored is not None and stored.expires == now + 600
    assert shared == [("10.0.0.7", now + 600, "superd bans")]
    (ban,) = [e for e in log_events if e.get("event") == "ban"]
    assert (ban["action"], ban["source"], ban["peer_host"]) == ("add", "operator", "10.0.0.7")
    assert victim.aborted and not bystander.aborted
    assert ask(top, {"command": "ban", "host": "10.0.0.9", "minutes": None})["ban"][
        "until"] is None
    assert access.bans.expiry("10.0.0.9") == math.inf


def test_unban_lifts_shares_and_logs(tmp_path: Path, log_events: list[dict[str, Any]]) -> None:
    """``unban`` lifts the ban in force, tells the fleet, logs it; lifting an
    address that is not banned says so."""
    top = daemon(tmp_path)
    bans = top.parts.access.bans
    lifted: list[str] = []
    bans.removal_listeners.append(lifted.append)
    bans.ban("10.0.0.7", 5, "trap")
    assert ask(top, {"command": "unban", "host": "10.0.0.7"}) == {
        "ok": True, "host": "10.0.0.7", "lifted": True}
    assert ask(top, {"command": "unban", "host": "10.0.0.7"})["lifted"] is False
    assert not bans.is_banned("10.0.0.7") and lifted == ["10.0.0.7"]
    assert [(e["action"], e["source"]) for e in log_events
            if e.get("event") == "ban"] == [("add", "sensor"), ("lift", "operator")]


def test_bans_lists_what_is_in_force_as_status_does(tmp_path: Path) -> None:
    """``bans`` lists the bans the daemon enforces, with status's field
    names, from the list in force: a row deleted from the database behind
    its back is still in force (and shown whole) until the list has read it."""
    top = daemon(tmp_path)
    top.parts.access.bans.ban("10.0.0.7", 5, "trap")
    BanStore(db_path(str(tmp_path))).remove("10.0.0.7")  # by hand, unnoticed yet
    rows = ask(top, {"command": "bans"})["bans"]
    assert [(r["host"], r["service_id"], r["hits"]) for r in rows] == [("10.0.0.7", "trap", 1)]
    status = ask(top, {"command": "status"})["status"]
    assert status["bans"] == rows
    assert set(rows[0]) == {"host", "until", "added", "service_id", "hits", "remote"}


@pytest.mark.parametrize("request_, error", [
    ({"command": "ban"}, "'host' must be an IP address"),
    ({"command": "ban", "host": "example.com"}, "not an IP address: 'example.com'"),
    ({"command": "ban", "host": "10.0.0.1", "minutes": 0}, "'minutes' must be"),
    ({"command": "ban", "host": "10.0.0.1", "minutes": "5"}, "'minutes' must be"),
    ({"command": "ban", "host": "10.0.0.1", "minutes": True}, "'minutes' must be"),
    ({"command": "ban", "host": "10.0.0.1", "minutes": 10 ** 400}, "'minutes' must be"),
    ({"command": "unban", "host": ["10.0.0.1"]}, "'host' must be an IP address"),
])
def test_bad_requests_are_refused_and_change_nothing(
        tmp_path: Path, request_: dict[str, Any], error: str) -> None:
    """Junk hosts and durations get ok=false with the reason; nothing is banned."""
    top = daemon(tmp_path)
    answer = ask(top, request_)
    assert answer["ok"] is False and answer["error"].startswith(error)
    assert len(top.parts.access.bans) == 0
