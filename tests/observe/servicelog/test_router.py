"""Tests for superd.observe.servicelog.router: routing xinetd lines to service logs."""

from __future__ import annotations

import calendar
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import attrs
import pytest
from twisted.internet.task import Clock
from twisted.logger import ILogObserver, capturedLogs, globalLogPublisher
from zope.interface.verify import verifyObject

from superd.config.load import load_configuration
from superd.config.model import FileLog, Location, SyslogLog
from superd.core.session import Peer
from superd.observe import events
from superd.observe.servicelog.router import ServiceLogRouter

from .configs import configuration, service

EXAMPLE = float(calendar.timegm((2026, 11, 29, 22, 11, 55, 0, 0, 0)))


class FakeSyslog:
    """Records what the stdlib ``syslog`` module would have been asked."""

    LOG_PID = 0x01
    LOG_NDELAY = 0x08
    LOG_DAEMON = 3 << 3

    def __init__(self) -> None:
        self.opened: list[tuple[str, int, int]] = []
        self.messages: list[tuple[int, str]] = []

    def openlog(self, ident: str, logoption: int, facility: int) -> None:
        self.opened.append((ident, logoption, facility))

    def syslog(self, priority: int, message: str) -> None:
        self.messages.append((priority, message))


@pytest.fixture
def clock() -> Iterator[Clock]:
    """A clock at xinetd's example instant, in UTC."""
    old = os.environ.get("TZ")
    os.environ["TZ"] = "UTC"
    time.tzset()
    c = Clock()
    c.advance(EXAMPLE)
    yield c
    if old is None:
        del os.environ["TZ"]
    else:
        os.environ["TZ"] = old
    time.tzset()


def line_event(service_id: str, line: str | None) -> dict[str, Any]:
    return {"event": "start", "service_id": service_id, "xinetd_line": line}


def lines(path: Path) -> list[str]:
    return path.read_text().splitlines()


def test_provides_ilogobserver(tmp_path: Path, clock: Clock) -> None:
    """The router is a twisted.logger observer."""
    router = ServiceLogRouter(configuration(), clock)
    assert verifyObject(ILogObserver, router)


def test_routes_line_to_the_services_file(tmp_path: Path, clock: Clock) -> None:
    """An event's xinetd_line goes to its own service's file, prefixed."""
    a, b = tmp_path / "a.log", tmp_path / "b.log"
    router = ServiceLogRouter(configuration(
        service("a", FileLog(str(a))), service("b", FileLog(str(b))),
        service("quiet", None)), clock)
    router(line_event("a", "START: a pid=0 from=127.0.0.1"))
    router(line_event("b", "FAIL: b address from=10.0.0.9"))
    router(line_event("quiet", "START: quiet"))
    router(line_event("unknown", "START: unknown"))
    assert lines(a) == ["26/11/29@22:11:55: START: a pid=0 from=127.0.0.1"]
    assert lines(b) == ["26/11/29@22:11:55: FAIL: b address from=10.0.0.9"]


def test_ignores_events_without_line(tmp_path: Path, clock: Clock) -> None:
    """Events with no xinetd_line (None or absent) or odd fields write nothing."""
    path = tmp_path / "a.log"
    router = ServiceLogRouter(configuration(service("a", FileLog(str(path)))),
                              clock)
    router(line_event("a", None))
    router({"event": "accept", "service_id": "a"})
    router({"xinetd_line": "START: a", "service_id": ["a"]})
    router({"xinetd_line": b"START: a", "service_id": "a"})
    assert path.read_text() == ""


def test_events_module_end_to_end(tmp_path: Path, clock: Clock) -> None:
    """emit_start/emit_fail through the global publisher land in the file."""
    path = tmp_path / "a.log"
    svc = service("a", FileLog(str(path)), success=frozenset({"HOST", "PID"}),
                  failure=frozenset({"HOST"}))
    router = ServiceLogRouter(configuration(svc), clock)
    globalLogPublisher.addObserver(router)
    try:
        events.emit_start(svc, 4242, Peer("127.0.0.1", 5000))
        events.emit_fail(svc, events.REASON_CPS, Peer("10.1.2.3", 6000))
    finally:
        globalLogPublisher.removeObserver(router)
    assert lines(path) == [
        "26/11/29@22:11:55: START: a pid=4242 from=127.0.0.1",
        "26/11/29@22:11:55: FAIL: a connections per second from=10.1.2.3"]


def test_defaults_file_is_one_shared_handle(tmp_path: Path,
                                            clock: Clock) -> None:
    """Services inheriting one FILE target share a descriptor and its size account."""
    path = tmp_path / "all.log"
    target = FileLog(str(path), soft=60, hard=10_000)
    opened: list[str] = []

    def opener(name: str, flags: int, mode: int) -> int:
        opened.append(name)
        return os.open(name, flags, mode)

    router = ServiceLogRouter(configuration(
        service("a", target), service("b", FileLog(str(path), soft=60, hard=10_000))),
        clock, opener=opener)
    assert opened == [str(path)]
    with capturedLogs() as logged:
        router(line_event("a", "START: a"))
        router(line_event("b", "START: b"))
        router(line_event("b", "START: b"))
    soft = [e for e in logged if e.get("limit") == "log_soft"]
    assert [e["service_id"] for e in soft] == ["b"]   # one alert for the shared file
    assert len(lines(path)) == 3


def test_update_keeps_reopens_only_what_changed(tmp_path: Path,
                                                clock: Clock) -> None:
    """update() keeps unchanged files open, closes removed ones, opens new ones."""
    a, b, c = (tmp_path / f"{n}.log" for n in "abc")
    router = ServiceLogRouter(configuration(
        service("a", FileLog(str(a))), service("b", FileLog(str(b)))), clock)
    sink_a = router.sink_for(FileLog(str(a)))
    sink_b = router.sink_for(FileLog(str(b)))
    router.update(configuration(
        service("a", FileLog(str(a))), service("b", FileLog(str(c)))))
    assert router.sink_for(FileLog(str(a))) is sink_a
    assert sink_b is not None and not sink_b.is_open
    router(line_event("b", "START: b"))
    assert lines(c) == ["26/11/29@22:11:55: START: b"]
    assert b.read_text() == ""


def test_reopen_reopens_every_file(tmp_path: Path, clock: Clock) -> None:
    """reopen() (logrotate, SIGHUP) makes every file be opened again by name."""
    a = tmp_path / "a.log"
    router = ServiceLogRouter(configuration(service("a", FileLog(str(a)))), clock)
    a.rename(tmp_path / "a.log.1")
    router.reopen()
    router(line_event("a", "START: a"))
    assert lines(a) == ["26/11/29@22:11:55: START: a"]


def test_close_stops_writing(tmp_path: Path, clock: Clock) -> None:
    """After close() nothing is written."""
    a = tmp_path / "a.log"
    router = ServiceLogRouter(configuration(service("a", FileLog(str(a)))), clock)
    router.close()
    router(line_event("a", "START: a"))
    assert a.read_text() == ""


def test_broken_sink_never_raises_and_reports_once(tmp_path: Path,
                                                   clock: Clock) -> None:
    """An unexpected error in a target is swallowed and logged once."""

    def broken_writer(fd: int, data: bytes) -> int:
        raise ValueError("bug")

    router = ServiceLogRouter(configuration(
        service("a", FileLog(str(tmp_path / "a.log")))), clock,
        writer=broken_writer)
    with capturedLogs() as logged:
        for _ in range(3):
            router(line_event("a", "START: a"))
    reports = [e for e in logged if e.get("event") == "service_log_error"]
    assert len(reports) == 1
    assert "ValueError" in reports[0]["error"]


class TestSyslog:
    def test_openlog_once_and_bare_lines(self, clock: Clock) -> None:
        """openlog("superd", PID|NDELAY) once; each line is sent bare at facility|level."""
        fake = FakeSyslog()
        router = ServiceLogRouter(configuration(
            service("a", SyslogLog("daemon")),
            service("b", SyslogLog("local3", "notice")),
            service("c", SyslogLog("authpriv", "warning"))),
            clock, syslog_module=fake)
        router(line_event("a", "START: a from=::1"))
        router(line_event("b", "FAIL: b time"))
        router(line_event("c", "EXIT: c status=0"))
        assert fake.opened == [("superd", 0x09, 3 << 3)]
        assert fake.messages == [
            ((3 << 3) | 6, "START: a from=::1"),
            ((19 << 3) | 5, "FAIL: b time"),
            ((10 << 3) | 4, "EXIT: c status=0")]

    def test_syslog_ident(self, clock: Clock) -> None:
        """``syslog_ident`` (--syslog-ident) is the ident openlog gets, so
        lines read ``xinetd[PID]: FAIL: ...`` for xinetd-keyed scanners."""
        fake = FakeSyslog()
        router = ServiceLogRouter(configuration(service("a", SyslogLog("daemon"))),
                                  clock, syslog_module=fake, syslog_ident="xinetd")
        router(line_event("a", "FAIL: a address from=127.0.0.2"))
        assert fake.opened == [("xinetd", 0x09, 3 << 3)]
        assert fake.messages == [((3 << 3) | 6, "FAIL: a address from=127.0.0.2")]

    def test_no_openlog_without_syslog_targets(self, tmp_path: Path,
                                               clock: Clock) -> None:
        """A configuration with no SYSLOG target never touches syslog."""
        fake = FakeSyslog()
        ServiceLogRouter(configuration(
            service("a", FileLog(str(tmp_path / "a.log")))), clock,
            syslog_module=fake)
        assert fake.opened == []

    def test_line_breaks_escaped(self, clock: Clock) -> None:
        """A line break inside a line cannot split a syslog record."""
        fake = FakeSyslog()
        router = ServiceLogRouter(configuration(service("a", SyslogLog("user"))),
                                  clock, syslog_module=fake)
        router(line_event("a", "USERID: a x\r\nFAIL: a"))
        assert fake.messages[0][1] == "USERID: a x\\r\\nFAIL: a"


def test_defaults_file_from_the_loader_is_shared(tmp_path: Path,
                                                 clock: Clock) -> None:
    """`log_type = FILE` in defaults, read by the real loader, opens one file once."""
    log = tmp_path / "all.log"
    conf = tmp_path / "xinetd.conf"
    blocks = "".join(
        f"service {name}\n{{\n\ttype = INTERNAL UNLISTED\n"
        f"\tsocket_type = stream\n\twait = no\n\tport = 0\n}}\n"
        for name in ("echo", "discard"))
    conf.write_text(f"defaults\n{{\n\tlog_type = FILE {log} 10K\n"
                    f"\tlog_on_success = HOST\n}}\n{blocks}")
    opened: list[str] = []

    def opener(name: str, flags: int, mode: int) -> int:
        opened.append(name)
        return os.open(name, flags, mode)

    router = ServiceLogRouter(load_configuration(str(conf)), clock,
                              opener=opener)
    router(line_event("echo", "START: echo from=127.0.0.1"))
    router(line_event("discard", "START: discard from=::1"))
    assert opened == [str(log)]
    assert [line[19:] for line in lines(log)] == [
        "START: echo from=127.0.0.1", "START: discard from=::1"]


def test_two_blocks_with_one_id_log_to_their_own_targets(tmp_path: Path,
                                                         clock: Clock) -> None:
    """The seed's two ``service ssh`` blocks (one id, two binds): each
    block's START/FAIL lines go to its own log_type only; a block without a
    log writes nowhere; an event without a block (or from a block a reload
    replaced) still reaches every log of its id."""
    lan, web = tmp_path / "lan.log", tmp_path / "web.log"
    first = attrs.evolve(service("ssh", FileLog(str(lan))), location=Location("ssh", 1),
                         bind=("192.168.0.1",))
    second = attrs.evolve(service("ssh", FileLog(str(web))), location=Location("ssh", 13),
                          bind=("192.0.2.1",))
    third = attrs.evolve(service("ssh", None), location=Location("ssh", 25),
                         bind=("10.0.0.254",))
    router = ServiceLogRouter(configuration(first, second, third), clock)
    globalLogPublisher.addObserver(router)
    try:
        events.emit_start(first, 10, Peer("192.168.0.7", 5000))
        events.emit_fail(second, events.REASON_PER_SOURCE, Peer("203.0.113.9", 6000))
        events.emit_start(third, 12, Peer("10.0.0.1", 5001))
    finally:
        globalLogPublisher.removeObserver(router)
    router(line_event("ssh", "START: ssh pid=11"))  # no block: every ssh log
    replaced = attrs.evolve(first, bind=("192.168.0.2",)).block_key  # not loaded
    router({**line_event("ssh", "EXIT: ssh status=0"), "service_block": replaced})
    assert lines(lan) == ["26/11/29@22:11:55: START: ssh pid=10 from=192.168.0.7",
                          "26/11/29@22:11:55: START: ssh pid=11",
                          "26/11/29@22:11:55: EXIT: ssh status=0"]
    assert lines(web) == ["26/11/29@22:11:55: FAIL: ssh per_source_limit from=203.0.113.9",
                          "26/11/29@22:11:55: START: ssh pid=11",
                          "26/11/29@22:11:55: EXIT: ssh status=0"]


def test_write_line_routes_by_block_as_events_do(tmp_path: Path, clock: Clock) -> None:
    """``write_line`` (the per-connection channel's entry) routes a bare line
    exactly as an event with the same fields: the block's own target, every
    target of the id for a block it does not know, nothing for an id
    without a log."""
    lan, web = tmp_path / "lan.log", tmp_path / "web.log"
    first = attrs.evolve(service("ssh", FileLog(str(lan))), location=Location("ssh", 1),
                         bind=("192.168.0.1",))
    second = attrs.evolve(service("ssh", FileLog(str(web))), location=Location("ssh", 13),
                          bind=("192.0.2.1",))
    router = ServiceLogRouter(configuration(first, second), clock)
    router.write_line("ssh", first.block_key, "START: ssh pid=0 from=192.168.0.7")
    router.write_line("ssh", "ssh/tcp/22/10.9.9.9", "EXIT: ssh status=0")
    router.write_line("quiet", "quiet/tcp/1/127.0.0.1", "START: quiet")
    assert lines(lan) == ["26/11/29@22:11:55: START: ssh pid=0 from=192.168.0.7",
                          "26/11/29@22:11:55: EXIT: ssh status=0"]
    assert lines(web) == ["26/11/29@22:11:55: EXIT: ssh status=0"]


def test_lines_reach_the_file_at_the_end_of_the_reactor_turn(tmp_path: Path,
                                                             clock: Clock) -> None:
    """As the daemon builds it (``after_turn`` on the reactor's
    ``callLater(0, ...)``), the router's FILE lines are written when the
    reactor has run the turn they were logged in; a reload that drops the
    target and a stop (``close``) write what is pending first."""
    a, b = tmp_path / "a.log", tmp_path / "b.log"
    config = configuration(service("a", FileLog(str(a))), service("b", FileLog(str(b))))
    router = ServiceLogRouter(config, clock, after_turn=lambda flush: clock.callLater(0, flush))
    router.write_line("a", "a", "START: a pid=0 from=127.0.0.1")
    router(line_event("a", "FAIL: a address from=10.0.0.9"))
    assert a.read_text() == ""
    clock.advance(0)
    assert lines(a) == ["26/11/29@22:11:55: START: a pid=0 from=127.0.0.1",
                        "26/11/29@22:11:55: FAIL: a address from=10.0.0.9"]
    router.write_line("a", "a", "EXIT: a status=0")
    router.write_line("b", "b", "START: b")
    router.update(configuration(service("b", FileLog(str(b)))))
    assert lines(a)[-1] == "26/11/29@22:11:55: EXIT: a status=0"
    router.close()
    assert lines(b) == ["26/11/29@22:11:55: START: b"]
    clock.advance(0)
    assert len(lines(a)) == 3 and len(lines(b)) == 1
