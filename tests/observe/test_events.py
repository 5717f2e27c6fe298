"""Tests for superd.observe.events: xinetd line shapes and the builtins' per-connection channel."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from twisted.internet.task import Clock
from twisted.logger import LogPublisher

from superd.config.model import FileLog
from superd.core.session import Peer
from superd.observe import events
from superd.observe.events import ConnectionEvents
from superd.observe.servicelog import ServiceLogRouter, ServiceLogService

from .servicelog.configs import configuration, service

PEER = Peer("192.0.2.7", 4000)


@pytest.fixture
def channel(monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[ConnectionEvents, list[Any]]]:
    """A fresh channel whose main log is a list (instead of the global publisher)."""
    main: list[Any] = []
    fresh = ConnectionEvents(main.append)
    monkeypatch.setattr(events, "connection_events", fresh)
    monkeypatch.setattr(events._connection_log, "observer", fresh)
    monkeypatch.setattr("superd.observe.servicelog.service.connection_events", fresh)
    yield fresh, main


def test_unconsumed_events_are_not_built(channel: tuple[ConnectionEvents, list[Any]],
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    """With no service log and a text main log, a builtin's START/EXIT build nothing."""
    fresh, main = channel
    rendered: list[object] = []
    monkeypatch.setattr(events, "start_line", lambda *a: rendered.append(a))
    events.emit_served_start(service("a", None), PEER)
    events.emit_served_exit(service("a", None), 1.5)
    assert not fresh.wanted("a") and main == [] and rendered == []


def test_direct_observer_gets_events_without_the_main_log(
        channel: tuple[ConnectionEvents, list[Any]]) -> None:
    """A direct observer (the service-log router) gets START and EXIT; the main log does not."""
    fresh, main = channel
    seen: list[Any] = []
    fresh.add_direct(seen.append)
    events.emit_served_start(service("a", None, frozenset({"HOST", "PID", "EXIT"})), PEER)
    events.emit_served_exit(service("a", None, frozenset({"EXIT"})), 2.0)
    assert [e["xinetd_line"] for e in seen] == [
        "START: a pid=0 from=192.0.2.7", "EXIT: a status=0"]
    assert [(e["event"], e["pid"]) for e in seen] == [("start", 0), ("exit", 0)]
    assert main == []
    fresh.remove_direct(seen.append)
    events.emit_served_start(service("a", None), PEER)
    assert len(seen) == 2


def test_only_wanted_services_are_built(channel: tuple[ConnectionEvents, list[Any]]) -> None:
    """A direct observer that writes service ``a`` only gets no events of ``b``."""
    fresh, main = channel
    seen: list[Any] = []
    fresh.add_direct(seen.append, lambda service_id: service_id == "a")
    events.emit_served_start(service("b", None), PEER)
    events.emit_served_start(service("a", None), PEER)
    assert [e["service_id"] for e in seen] == ["a"]


def test_main_log_gets_each_event_once(channel: tuple[ConnectionEvents, list[Any]]) -> None:
    """Sent to the main log, events reach it once and skip direct observers (they watch it too)."""
    fresh, main = channel
    seen: list[Any] = []
    fresh.add_direct(seen.append)
    fresh.send_to_main_log()
    events.emit_served_start(service("a", None), PEER)
    assert [(e["event"], e["service_id"], e["peer_host"]) for e in main] == [
        ("start", "a", "192.0.2.7")]
    assert seen == []


def test_wait_yes_server_start_always_reaches_the_main_log(
        channel: tuple[ConnectionEvents, list[Any]], log_events: list[dict[str, Any]]) -> None:
    """START of a ``wait = yes`` server is a main-log event whatever the channel's consumers."""
    fresh, main = channel
    events.emit_start(service("a", None), 4242, PEER)
    assert [(e["event"], e["pid"]) for e in log_events] == [("start", 4242)]
    assert main == []


def test_session_child_events_are_built_only_when_consumed(
        channel: tuple[ConnectionEvents, list[Any]], log_events: list[dict[str, Any]],
        monkeypatch: pytest.MonkeyPatch) -> None:
    """START/EXIT of a per-connection server process go on the channel: with
    nothing consuming it they are not even rendered; with the main log
    consuming it they arrive there with the child's pid and status."""
    fresh, main = channel
    rendered: list[object] = []
    monkeypatch.setattr(events, "start_line", lambda *a: rendered.append(a))
    monkeypatch.setattr(events, "exit_line", lambda *a: rendered.append(a))
    events.emit_session_start(service("a", None), 4242, PEER)
    events.emit_session_exit(service("a", None), 4242, 3, None, 0.5)
    assert rendered == [] and main == [] and log_events == []
    fresh.send_to_main_log()
    events.emit_session_start(service("a", None), 4242, PEER)
    events.emit_session_exit(service("a", None), 4242, 3, None, 0.5)
    assert [(e["event"], e["pid"], e.get("status")) for e in main] == [
        ("start", 4242, None), ("exit", 4242, 3)]


def test_child_killed_by_a_signal_always_reaches_the_main_log(
        channel: tuple[ConnectionEvents, list[Any]], log_events: list[dict[str, Any]]) -> None:
    """A per-connection server killed by a signal (a crash) is logged even
    when nothing consumes the per-connection channel."""
    fresh, main = channel
    events.emit_session_exit(service("a", None), 4242, None, 11, 0.25)
    assert [(e["event"], e["pid"], e["signal"]) for e in log_events] == [("exit", 4242, 11)]
    assert main == []


def test_a_session_superd_ended_always_reaches_the_main_log_with_its_reason(
        channel: tuple[ConnectionEvents, list[Any]], log_events: list[dict[str, Any]]) -> None:
    """EXIT of a session superd ended (a ban, a reload) goes to the main log
    even when nothing consumes the per-connection channel, with the reason
    in its own field and text; the xinetd line keeps xinetd's shape."""
    from twisted.logger import formatEvent

    fresh, main = channel
    logged = service("a", None, success=frozenset({"EXIT", "PID", "DURATION"}))
    events.emit_session_exit(logged, 4242, None, 15, 2.5, events.END_BANNED)
    events.emit_served_exit(logged, 1.0, events.END_RECONFIGURED)
    assert [(e["pid"], e["signal"], e["reason"], e["xinetd_line"]) for e in log_events] == [
        (4242, 15, "banned", "EXIT: a signal=15 pid=4242 duration=2(sec)"),
        (0, None, "reconfigured", "EXIT: a status=0 pid=0 duration=1(sec)")]
    assert [formatEvent(e) for e in log_events] == [
        "EXIT a pid=4242 signal=15 duration=2.500s reason=banned",
        "EXIT a pid=0 status=0 duration=1.000s reason=reconfigured"]
    assert main == []


def test_exit_text_names_the_status_or_the_signal_that_applies(
        channel: tuple[ConnectionEvents, list[Any]], log_events: list[dict[str, Any]]) -> None:
    """The main log's EXIT text shows ``signal=N`` for a killed server and
    ``status=N`` for one that exited, never the other one as None; both
    fields stay in the event (the one that does not apply is None)."""
    from twisted.logger import formatEvent

    logged = service("a", None, success=frozenset())
    events.emit_exit(logged, 10, None, 15, 0.25)
    events.emit_exit(logged, 11, 3, None, 0.5)
    assert [formatEvent(e) for e in log_events] == [
        "EXIT a pid=10 signal=15 duration=0.250s", "EXIT a pid=11 status=3 duration=0.500s"]
    assert [(e["status"], e["signal"]) for e in log_events] == [(None, 15), (3, None)]


def test_service_log_gets_builtin_lines_directly(
        tmp_path: Path, channel: tuple[ConnectionEvents, list[Any]]) -> None:
    """While the service-log service runs, a builtin's START reaches its FILE log directly."""
    fresh, main = channel
    path = tmp_path / "a.log"
    svc = ServiceLogService(ServiceLogRouter(
        configuration(service("a", FileLog(str(path)))), Clock()), LogPublisher())
    svc.startService()
    events.emit_served_start(service("a", None), PEER)
    assert not fresh.wanted("b")  # no service log: its events are not built
    svc.stopService()
    events.emit_served_start(service("a", None), PEER)
    assert [line.split(": ", 1)[1] for line in path.read_text().splitlines()] == [
        "START: a pid=0 from=192.0.2.7"]
    assert main == [] and not fresh.wanted("a")


class LineRecorder:
    """A direct observer that also takes bare xinetd lines (as the router does)."""

    def __init__(self) -> None:
        self.events: list[Any] = []
        self.lines: list[tuple[str, str, str]] = []

    def __call__(self, event: Any) -> None:
        self.events.append(event)

    def write_line(self, service_id: str, service_block: str, line: str) -> None:
        self.lines.append((service_id, service_block, line))


def test_line_writers_get_the_line_and_no_event_is_built(
        channel: tuple[ConnectionEvents, list[Any]], monkeypatch: pytest.MonkeyPatch) -> None:
    """While every direct observer takes lines, START/EXIT hand over only
    their xinetd line (with the service and its block), building no event."""
    fresh, main = channel
    recorder = LineRecorder()
    fresh.add_direct(recorder, lines=recorder.write_line)
    built: list[object] = []
    monkeypatch.setattr(events, "_start", lambda *a: built.append(a))
    monkeypatch.setattr(events, "_exit", lambda *a: built.append(a))
    logged = service("a", None, success=frozenset({"HOST", "PID", "EXIT", "DURATION"}))
    events.emit_served_start(logged, PEER)
    events.emit_session_exit(logged, 4242, 3, None, 2.5)
    events.emit_served_start(service("a", None, success=frozenset()), PEER)
    block = events.block_of(logged)
    assert recorder.lines == [
        ("a", block, "START: a pid=0 from=192.0.2.7"),
        ("a", block, "EXIT: a status=3 pid=4242 duration=2(sec)")]
    assert recorder.events == [] and built == [] and main == []


def test_lines_are_the_events_lines(
        channel: tuple[ConnectionEvents, list[Any]]) -> None:
    """The bare line is byte for byte the ``xinetd_line`` of the event it replaces."""
    fresh, main = channel
    recorder = LineRecorder()
    fresh.add_direct(recorder, lines=recorder.write_line)
    cases = [(frozenset({"HOST", "PID", "EXIT", "DURATION"}), 7, None, 0.999),
             (frozenset({"DURATION"}), 0, None, 61.5), (frozenset({"PID"}), 3, None, 1.0),
             (frozenset({"EXIT"}), 0, 255, None)]
    for flags, pid, status, duration in cases:
        svc = service("a", None, success=flags)
        events.emit_session_start(svc, pid, PEER)
        events.emit_session_exit(svc, pid, status, None, duration or 0.0)
    by_lines = [line for _, _, line in recorder.lines]
    fresh.send_to_main_log()
    for flags, pid, status, duration in cases:
        svc = service("a", None, success=flags)
        events.emit_session_start(svc, pid, PEER)
        events.emit_session_exit(svc, pid, status, None, duration or 0.0)
    assert by_lines == [e["xinetd_line"] for e in main if e["xinetd_line"] is not None]
    assert len(by_lines) == 7


def test_an_event_observer_beside_a_line_writer_gets_events(
        channel: tuple[ConnectionEvents, list[Any]]) -> None:
    """A direct observer that takes events makes the channel build them again;
    the line writer then gets the event too, through its observer."""
    fresh, main = channel
    recorder, seen = LineRecorder(), []
    fresh.add_direct(recorder, lines=recorder.write_line)
    fresh.add_direct(seen.append)
    events.emit_served_start(service("a", None), PEER)
    assert [e["xinetd_line"] for e in seen] == ["START: a pid=0 from=192.0.2.7"]
    assert [e["xinetd_line"] for e in recorder.events] == ["START: a pid=0 from=192.0.2.7"]
    assert recorder.lines == []
    fresh.remove_direct(seen.append)
    events.emit_served_start(service("a", None), PEER)
    assert len(recorder.lines) == 1 and len(recorder.events) == 1


def test_service_log_line_is_in_the_file_when_emit_returns(
        tmp_path: Path, channel: tuple[ConnectionEvents, list[Any]]) -> None:
    """The service log holds no line back: START and EXIT are in the file
    (one write each) as soon as the emitting call returns, with no reactor
    turn in between."""
    fresh, main = channel
    path = tmp_path / "a.log"
    logged = service("a", FileLog(str(path)),
                     success=frozenset({"HOST", "PID", "EXIT", "DURATION"}))
    svc = ServiceLogService(ServiceLogRouter(configuration(logged), Clock()), LogPublisher())
    svc.startService()
    try:
        assert fresh.line_writers is not None  # the service log takes bare lines
        events.emit_served_start(logged, PEER)
        assert path.read_text().endswith(": START: a pid=0 from=192.0.2.7\n")
        events.emit_served_exit(logged, 3.25)
        assert path.read_text().endswith(": EXIT: a status=0 pid=0 duration=3(sec)\n")
    finally:
        svc.stopService()
    assert fresh.line_writers == ()  # nothing direct left: nothing wanted


def test_userid_noid_and_traffic_line_shapes() -> None:
    """USERID, NOID and TRAFFIC lines have xinetd's shapes; TRAFFIC only with its flag."""
    assert events.userid_line("identsvc", "UNIX : alice") == "USERID: identsvc UNIX : alice"
    assert events.noid_line("id", "::ffff:127.0.0.1", events.NOID_TIMEOUT) == (
        "NOID: id ::ffff:127.0.0.1 timeout")
    line = events.traffic_line("r", frozenset({"TRAFFIC"}), 12, 3)
    assert line == "TRAFFIC: r in=12(bytes) out=3(bytes)"
    assert events.traffic_line("r", frozenset({"HOST"}), 12, 3) is None


@pytest.mark.parametrize("flags", [
    frozenset({"HOST", "PID", "EXIT", "DURATION"}),
    frozenset({"HOST"}),
    frozenset({"DURATION"}),
])
def test_builtin_lines_are_the_same_whether_kept_or_built(flags: frozenset[str]) -> None:
    """A builtin's (pid 0) START and EXIT lines are kept once built; each is
    still the line its arguments describe: another host, status, signal or
    whole second gives another line, and a plain set of flags (never kept)
    gives the same text."""
    peers = [Peer.from_address(("127.0.0.1", 1)), Peer.from_address(("127.0.0.2", 1))]
    for _ in range(2):  # the second round finds them kept
        for peer in peers:
            assert events.start_line("svc", flags, 0, peer) == events.start_line(
                "svc", set(flags), 0, peer)
        for status, signal, duration in ((0, None, 0.4), (0, None, 1.7), (3, None, 1.2),
                                         (None, 9, 0.0)):
            assert events.exit_line("svc", flags, 0, status, signal, duration) == (
                events.exit_line("svc", set(flags), 0, status, signal, duration))
    assert events.exit_line("svc", frozenset({"EXIT", "DURATION"}), 0, 0, None, 1.7) == (
        "EXIT: svc status=0 duration=1(sec)")
    assert events.exit_line("svc", frozenset({"EXIT"}), 0, None, 9, 0.0) == "EXIT: svc signal=9"
    assert events.start_line("svc", frozenset({"HOST"}), 0, peers[1]) == (
        "START: svc from=127.0.0.2")
