"""Tests for superd.daemon.status: the snapshot of a running tree and its rendering."""

from __future__ import annotations

import json
import types
from pathlib import Path
from typing import Any

import attrs
import pytest
from twisted.application.service import Service
from twisted.internet.address import IPv4Address
from twisted.internet.testing import MemoryReactorClock
from zope.interface import implementer
from zope.interface.verify import verifyObject

import superd
from superd.access.bans import BanList
from superd.access.banstore import Ban, BanStore
from superd.access.state import AccessState
from superd.config.model import CPS, FOREVER, Configuration, ServiceConfig
from superd.core.runtime import Runtime
from superd.core.session import Peer
from superd.core.timestamps import rfc3339
from superd.daemon.service import build_service
from superd.daemon.status import render_text, snapshot, uptime_text
from superd.net.address import ListenAddress
from superd.net.listener import IListener, ListenState, ListenStatus
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
    counts.end("reconfigured")
    status = snapshot(top, {"ok": True, "time": 1.0}, pid=7)
    (entry,) = status["services"]
    assert entry["listen"] == ["tcp 127.0.0.1:14007"]
    assert (entry["state"], entry["accepted"], entry["refused"], entry["ended"]) == \
        ("listening", 1, {"address": 2}, {"reconfigured": 1})
    assert entry["sessions"] == 0 and entry["location"] == "conf/echo:1"
    assert status["children"] == [{"pid": 42, "service_id": "echo", "peer_host": "127.0.0.9",
                                   "peer_port": 5555, "started": "1970-01-01T00:16:40.000000Z"}]
    assert (status["pid"], status["reload"], status["sources"]) == \
        (7, {"ok": True, "time": "1970-01-01T00:00:01.000000Z"}, ["conf/echo"])
    json.dumps(status, allow_nan=False)  # JSON-ready


def test_snapshot_says_which_daemon_since_when() -> None:
    """version, pid, configuration path, start time, uptime and the time now,
    every time in RFC 3339 (UTC)."""
    top = running(service())
    status = snapshot(top, pid=7, started=1500.25, config="/etc/superd")
    assert {k: status[k] for k in ("version", "pid", "config", "started", "uptime", "time")} \
        == {"version": superd.__version__, "pid": 7, "config": "/etc/superd",
            "started": "1970-01-01T00:25:00.250000Z", "uptime": 499.75,
            "time": "1970-01-01T00:33:20.000000Z"}
    assert render_text(status).splitlines()[:2] == [
        f"superd {superd.__version__}, pid 7, configuration /etc/superd",
        "started 1970-01-01T00:25:00Z (up 8m 19s)"]


def test_snapshot_of_a_daemon_not_started() -> None:
    """Without a start time or a configuration path, those are null (and ? in text)."""
    status = snapshot(running(service()), pid=7)
    assert (status["started"], status["uptime"], status["config"]) == (None, None, None)
    assert "superd " in render_text(status) and "configuration ?" in render_text(status)


@pytest.mark.parametrize(("seconds", "text"), [
    (0, "0s"), (59.9, "59s"), (60, "1m 0s"), (3600, "1h 0m 0s"), (90061, "1d 1h 1m 1s")])
def test_uptime_text(seconds: float, text: str) -> None:
    """Largest unit first, leading empty units left out."""
    assert uptime_text(seconds) == text


def test_cps_pause_shows_until_when() -> None:
    """A service paused by cps says so, with the time it resumes."""
    top = running(service(cps=CPS(1, 30)))
    (svc,) = top.configuration.services
    rate = top.access.rates[(svc.block_key, CPS(1, 30))]
    for _ in range(3):
        rate.check(Peer("127.0.0.1", 1), top.runtime.seconds())
    (entry,) = snapshot(top)["services"]
    assert (entry["state"], entry["reason"], entry["until"]) == (
        "paused", "cps", "1970-01-01T00:33:50.000000Z")
    assert "paused by cps until 1970-01-01T00:33:50Z" in render_text(snapshot(top))


def test_bans_in_force_are_listed_not_the_database(tmp_path: Path) -> None:
    """The bans the daemon enforces are listed with their expiry and the
    database's details; expired ones are not, nor a row the list has not
    loaded (it is not in force yet)."""
    top = running(service())
    store = BanStore(str(tmp_path / "bans.sqlite3"))
    store.put(Ban("10.0.0.1", None, 1.0, "trap", 3))
    store.put(Ban("10.0.0.2", 1500.0, 1.0, "trap", 1))
    top.access.bans = BanList(store, top.runtime.reactor)
    store.put(Ban("10.0.0.3", None, 1.0, "trap", 1))  # not loaded yet
    assert snapshot(top)["bans"] == [{"host": "10.0.0.1", "until": None,
                                      "added": "1970-01-01T00:00:01.000000Z",
                                      "service_id": "trap", "hits": 3,
                                      "remote": False}]
    assert "10.0.0.1  forever" in render_text(snapshot(top))


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
        {"host": "10.0.0.1", "until": None, "added": rfc3339(2000.0), "service_id": "trap",
         "hits": 1, "remote": False},
        {"host": "10.0.0.3", "until": rfc3339(5000.0), "added": rfc3339(2000.0),
         "service_id": "elsewhere", "hits": 1, "remote": True},
        {"host": "10.0.0.4", "until": rfc3339(2661.0), "added": rfc3339(2061.0),
         "service_id": "trap", "hits": 1, "remote": False}]
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


@implementer(IListener)
class StatedListener(Service):
    """A listener bound to 127.0.0.1:99 that reports a given status."""

    def __init__(self, address: ListenAddress, status: ListenStatus) -> None:
        self.address = address
        self._status = status

    def bound_port(self) -> int | None:
        return None if self._status.state is ListenState.CLOSED else 99

    def status(self) -> ListenStatus:
        return self._status

    def listening_socket(self) -> None:
        return None

    def adopt(self, predecessor: IListener) -> None:
        raise TypeError("not in these tests")

    def release(self) -> tuple[None, None]:
        raise TypeError("not in these tests")

    def close(self) -> None:
        pass


def test_wait_yes_service_is_suspended_or_backing_off() -> None:
    """A wait=yes service shows its running server, or when its back-off
    ends; a closed one its configured address."""
    from superd.net.sockets import listen_addresses

    wait = service(wait=True, type=frozenset(), server="/bin/cat")
    (address,) = listen_addresses(wait)
    access = AccessState(Runtime(reactor=MemoryReactorClock()))
    for status, expected in (
            (ListenStatus(ListenState.SUSPENDED, server_pid=5),
             {"state": "suspended", "server_pid": 5, "listen": ["tcp 127.0.0.1:99"]}),
            (ListenStatus(ListenState.BACKING_OFF, until=3000.0),
             {"state": "backing off", "until": "1970-01-01T00:50:00.000000Z",
              "listen": ["tcp 127.0.0.1:99"]}),
            (ListenStatus(ListenState.LISTENING),
             {"state": "listening", "listen": ["tcp 127.0.0.1:99"]}),
            (ListenStatus(ListenState.CLOSED),
             {"state": "closed", "listen": ["tcp 127.0.0.1:10007"]})):
        listener = StatedListener(address, status)
        assert verifyObject(IListener, listener)
        top = types.SimpleNamespace(access=access, configuration=Configuration(()), kept=(),
                                    groups=[(wait, [listener])])
        (entry,) = snapshot(top)["services"]
        assert {k: entry[k] for k in expected} == expected


def test_failed_kept_and_disabled_services_with_their_errors() -> None:
    """Services that do not run because of errors are listed with those
    errors (the fields of ``superd check --json``), whether their previous
    definition runs, and the disabled ones; the text shows all of it."""
    from superd.config.errors import Problem
    from superd.config.model import DisabledReason, DisabledService, FailedService, Location
    from superd.daemon.isolation import Kept

    echo = service()
    problem = Problem("conf/echo", 5, "echo", "wait", "expected yes or no, got 'perhaps'")
    gone = Problem("conf/amanda", 16, "amanda", "server", "/x is not an executable file")
    redefined = FailedService("echo", "echo", Location("conf/echo", 1), (problem,))
    amanda = FailedService("amanda", "amanda", Location("conf/amanda", 3), (gone,))
    top = running(echo)
    top.configuration = attrs.evolve(
        top.configuration, failed=(redefined, amanda), problems=(problem, gone),
        disabled=(DisabledService("time", "time", Location("conf/time", 1),
                                  DisabledReason.DISABLE),))
    top.kept = (Kept(echo, redefined),)
    status = snapshot(top)
    (entry,) = status["services"]
    assert entry["kept"] == "its new block (conf/echo:1) has 1 error"
    assert [(f["id"], f["state"], f["previous"]) for f in status["failed"]] == [
        ("echo", "failed at reload", ["conf/echo:1"]), ("amanda", "failed", [])]
    assert status["failed"][1]["problems"] == [{
        "file": "conf/amanda", "line": 16, "service_id": "amanda", "section": None,
        "attribute": "server", "message": "/x is not an executable file",
        "text": "conf/amanda:16: service amanda: server: /x is not an executable file"}]
    assert status["error_count"] == 2 and len(status["errors"]) == 2
    assert status["disabled"] == [{"id": "time", "name": "time", "location": "conf/time:1",
                                   "reason": "disable = yes"}]
    json.dumps(status)
    text = render_text(status)
    assert "1 services, 2 failed, 1 disabled" in text
    assert "listening (previous definition)" in text
    assert ("  echo  conf/echo:1  failed at reload, previous definition running"
            " (conf/echo:1)\n    conf/echo:5: service echo: wait: expected yes or no,"
            " got 'perhaps'\n") in text
    assert ("  amanda  conf/amanda:3  failed, not running\n"
            "    conf/amanda:16: service amanda: server: /x is not an executable file\n"
            ) in text
    assert "DISABLED  WHERE        WHY\ntime      conf/time:1  disable = yes" in text


def test_render_text_shows_a_partly_applied_reload() -> None:
    """A reload applied but for failed services says so, with its errors."""
    top = running(service())
    text = render_text(snapshot(top, {"ok": False, "partial": True, "time": 0.0, "new": 1,
                                      "old": 2, "dropped": 0, "failed": [{"id": "x"}],
                                      "errors": ["conf/x:3: bad"]}))
    assert "PARTLY APPLIED (new=1 old=2 dropped=0): 1 service failed, 1 error:" in text
    assert "\n  conf/x:3: bad\n" in text
