"""Tests for superd.daemon.status: the snapshot of a running tree and its rendering."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import attrs
from twisted.internet.address import IPv4Address
from twisted.internet.testing import MemoryReactorClock

from superd.access.state import AccessState
from superd.config.model import CPS, FOREVER, Configuration, ServiceConfig
from superd.core.runtime import Runtime
from superd.core.session import Peer
from superd.daemon.service import build_service
from superd.daemon.status import render_text, snapshot
from tests.builders import local_echo_service as service
from tests.fakes import make_parts


class Reactor(MemoryReactorClock):
    def listenTCP(self, port: int, factory: Any, backlog: int = 50,
                  interface: str = "") -> Any:
        fake = super().listenTCP(port, factory, backlog, interface)
        fake._hostAddress = IPv4Address("TCP", interface, 4000 + port)
        return fake


@attrs.define
class Child:
    pid: int
    service_id: str
    peer: Peer | None
    started: float


class Processes:
    def children(self) -> tuple[Child, ...]:
        return (Child(42, "echo", Peer("127.0.0.9", 5555), 1000.0),)


def running(*services: ServiceConfig) -> Any:
    reactor = Reactor()
    reactor.advance(2000)
    runtime = Runtime(reactor=reactor)
    parts = make_parts(runtime, processes=Processes())  # type: ignore[arg-type]
    top = build_service(Configuration(services=services, sources=("conf/echo",)), parts,
                        install_signal=lambda *a: None)
    top.privilegedStartService()
    top.startService()
    return top


def test_snapshot_lists_services_addresses_counters_and_children() -> None:
    """Every service appears with its bound address, counters and running children."""
    top = running(service())
    (svc,) = top.configuration.services
    counts = top.access.counters.for_block("echo", svc.block_key)
    counts.accept()
    counts.refuse("address")
    counts.refuse("address")
    status = snapshot(top, {"ok": True, "time": 1.0}, pid=7)
    (entry,) = status["services"]
    assert entry["listen"] == ["tcp 127.0.0.1:14007"]
    assert (entry["state"], entry["accepted"], entry["refused"]) == \
        ("listening", 1, {"address": 2})
    assert entry["sessions"] == 0 and entry["where"] == "conf/echo:1"
    assert status["children"] == [{"pid": 42, "service_id": "echo", "peer": "127.0.0.9:5555",
                                   "started": 1000.0}]
    assert (status["pid"], status["reload"], status["sources"]) == \
        (7, {"ok": True, "time": 1.0}, ["conf/echo"])
    json.dumps(status)  # JSON-ready


def test_cps_pause_shows_until_when() -> None:
    """A service paused by cps says so, with the time it resumes."""
    top = running(service(cps=CPS(1, 30)))
    (svc,) = top.configuration.services
    rate = top.access.rates[(svc.block_key, CPS(1, 30))]
    for _ in range(3):
        rate.check(Peer("127.0.0.1", 1), top.runtime.seconds())
    (entry,) = snapshot(top)["services"]
    assert (entry["state"], entry["reason"], entry["until"]) == ("paused", "cps", 2030.0)
    assert "paused by cps until" in render_text(snapshot(top))


def test_bans_are_those_in_force_not_the_files(tmp_path: Path) -> None:
    """Status lists the bans being enforced (expired ones not), even those the
    database does not hold (it failed), and says the database is degraded."""
    top = running(service())
    bans = top.access.bans
    bans.ban("10.0.0.1", FOREVER, "trap")
    bans.ban("10.0.0.2", 1, "trap")
    bans.merge("10.0.0.3", 5000.0, "elsewhere")
    top.runtime.reactor.advance(61)
    assert bans.store is not None
    bans.store.close()  # the file fails from now on
    bans.ban("10.0.0.4", 10, "trap")
    status = snapshot(top)
    assert status["bans"] == [
        {"host": "10.0.0.1", "until": None, "added": 2000.0, "service_id": "trap",
         "hits": 1, "remote": False},
        {"host": "10.0.0.3", "until": 5000.0, "added": 2000.0, "service_id": "elsewhere",
         "hits": 1, "remote": True},
        {"host": "10.0.0.4", "until": 2661.0, "added": 2061.0, "service_id": "trap",
         "hits": 1, "remote": False}]
    database = status["ban_database"]
    assert (database["state"], database["unsaved"]) == ("degraded", 1)
    assert "closed" in database["error"]
    text = render_text(status)
    assert "10.0.0.1  forever" in text and "elsewhere (fleet)" in text
    assert "ban database: :memory: DEGRADED, bans are kept in memory" in text
    assert status["ban_store"] is None
    json.dumps(status)


def test_render_text_shows_a_failed_reload_and_its_errors() -> None:
    """The last reload's failure and every error are in the text."""
    top = running(service())
    text = render_text(snapshot(top, {"ok": False, "time": 0.0,
                                      "errors": ["conf/x:3: bad", "conf/y:1: worse"]}))
    assert "FAILED, the previous configuration is running (2 errors):" in text
    assert "\n  conf/x:3: bad\n  conf/y:1: worse\n" in text
    assert "echo     builtin  listening  tcp 127.0.0.1:14007" in text




class WaitPort:
    def __init__(self, child: Any = None, backoff_until: float | None = None) -> None:
        self.child, self.backoff_until = child, backoff_until

    def getHost(self) -> IPv4Address:
        return IPv4Address("TCP", "127.0.0.1", 99)


def test_wait_yes_service_is_suspended_or_backing_off() -> None:
    """A wait=yes service shows its running server, or when its back-off ends."""
    import types

    from superd.net.sockets import listen_addresses

    wait = service(wait=True, type=frozenset(), server="/bin/cat")
    (address,) = listen_addresses(wait)
    access = AccessState(Runtime(reactor=MemoryReactorClock()))
    for port, expected in ((WaitPort(child=Child(5, "echo", None, 0.0)),
                            {"state": "suspended", "server_pid": 5}),
                           (WaitPort(backoff_until=3000.0),
                            {"state": "backing off", "until": 3000.0}),
                           (WaitPort(), {"state": "listening"})):
        child = types.SimpleNamespace(address=address, port=port)
        top = types.SimpleNamespace(access=access, configuration=Configuration(()),
                                    groups=[(wait, [child])])
        (entry,) = snapshot(top)["services"]
        assert {k: entry[k] for k in expected} == expected
        assert entry["listen"] == ["tcp 127.0.0.1:99"]
