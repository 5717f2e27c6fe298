"""Tests for superd.observe.servicelog.filelog: xinetd's FILE service log."""

from __future__ import annotations

import calendar
import errno
import os
import stat
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st
from twisted.logger import LogEvent, capturedLogs

from superd.config.model import FileLog
from superd.observe.events import EV_SERVICE_LOG_ERROR
from superd.observe.servicelog.filelog import (
    FileSink,
    effective_limits,
    one_line,
    xinetd_timestamp,
)

#: 2026-11-29 22:11:55 UTC, the instant of xinetd's verified example line.
EXAMPLE = float(calendar.timegm((2026, 11, 29, 22, 11, 55, 0, 0, 0)))


@pytest.fixture
def timezone(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Run the test in UTC and restore the process time zone afterwards."""
    monkeypatch.setenv("TZ", "UTC")
    time.tzset()
    yield
    monkeypatch.undo()
    time.tzset()


def read(path: Path) -> list[str]:
    return path.read_text().splitlines()


def errors(events: list[LogEvent]) -> list[LogEvent]:
    return [e for e in events if e.get("event") == EV_SERVICE_LOG_ERROR]


def limit_alerts(events: list[LogEvent]) -> list[str]:
    return [e["limit"] for e in events if e.get("event") == "limit"]


class TestTimestamp:
    def test_xinetd_example(self, timezone: None) -> None:
        """The prefix of xinetd's verified line: year mod 100, local time."""
        assert xinetd_timestamp(time.localtime(EXAMPLE)) == "26/11/29@22:11:55"

    def test_month_and_day_not_padded(self, timezone: None) -> None:
        """Month and day have no leading zero; year and clock fields do."""
        instant = calendar.timegm((2007, 1, 5, 7, 4, 9, 0, 0, 0))
        assert xinetd_timestamp(time.localtime(instant)) == "07/1/5@07:04:09"

    def test_local_time_zone(self, monkeypatch: pytest.MonkeyPatch,
                             timezone: None) -> None:
        """The prefix is local time: UTC+5:30 moves it past midnight."""
        monkeypatch.setenv("TZ", "Asia/Kolkata")
        time.tzset()
        assert xinetd_timestamp(time.localtime(EXAMPLE)) == "26/11/30@03:41:55"


class TestLimits:
    def test_hard_defaults_to_soft_plus_at_least_5k(self) -> None:
        """A small soft limit gets 5 KiB of headroom."""
        assert effective_limits(FileLog("/x", soft=1000)) == (1000, 1000 + 5120)

    def test_hard_defaults_to_soft_plus_one_percent(self) -> None:
        """Between the clamps the headroom is soft/100."""
        assert effective_limits(FileLog("/x", soft=1_000_000)) == (
            1_000_000, 1_010_000)

    def test_hard_headroom_at_most_20k(self) -> None:
        """A large soft limit gets at most 20 KiB of headroom."""
        soft = 10 * 1024 * 1024
        assert effective_limits(FileLog("/x", soft=soft)) == (soft, soft + 20480)

    def test_explicit_limits_and_none(self) -> None:
        """Written limits are kept; no limits means no size control."""
        assert effective_limits(FileLog("/x", soft=10, hard=50)) == (10, 50)
        assert effective_limits(FileLog("/x")) == (None, None)


def test_one_line_escapes_line_breaks() -> None:
    """A CR or LF inside a record cannot start a forged line."""
    assert one_line("USERID: s a\nSTART: x") == "USERID: s a\\nSTART: x"
    assert one_line("USERID: s a\rSTART: x") == "USERID: s a\\rSTART: x"
    assert one_line("plain") == "plain"


class TestWrite:
    def test_line_with_prefix(self, tmp_path: Path, timezone: None) -> None:
        """A line is appended with xinetd's prefix and a newline."""
        path = tmp_path / "svc.log"
        sink = FileSink(FileLog(str(path)), "echo-stream")
        sink.open()
        sink.write("echo-stream",
                   "START: echo-stream pid=9799 from=127.0.0.1", EXAMPLE)
        assert read(path) == [
            "26/11/29@22:11:55: START: echo-stream pid=9799 from=127.0.0.1"]

    def test_appends_and_mode(self, tmp_path: Path, timezone: None) -> None:
        """The file is created 0644 (umask 022) and existing lines are kept."""
        path = tmp_path / "svc.log"
        path.write_text("old\n")
        path.chmod(0o600)
        new = tmp_path / "new.log"
        old_umask = os.umask(0o022)
        try:
            for target in (path, new):
                sink = FileSink(FileLog(str(target)), "s")
                sink.open()
                sink.write("s", "FAIL: s address from=10.0.0.1", EXAMPLE + 1)
                sink.close()
        finally:
            os.umask(old_umask)
        assert read(path) == ["old", "26/11/29@22:11:56: FAIL: s address from=10.0.0.1"]
        assert stat.S_IMODE(new.stat().st_mode) == 0o644

    def test_prefix_follows_the_clock(self, tmp_path: Path,
                                      timezone: None) -> None:
        """The cached prefix changes when the injected time moves on."""
        path = tmp_path / "svc.log"
        sink = FileSink(FileLog(str(path)), "s")
        sink.open()
        for offset in (0.1, 0.9, 1.0, 3600):
            sink.write("s", "START: s", EXAMPLE + offset)
        assert [line.split(": ")[0] for line in read(path)] == [
            "26/11/29@22:11:55", "26/11/29@22:11:55", "26/11/29@22:11:56",
            "26/11/29@23:11:55"]

    def test_closed_sink_drops_lines(self, tmp_path: Path) -> None:
        """After close nothing is written and nothing raises."""
        path = tmp_path / "svc.log"
        sink = FileSink(FileLog(str(path)), "s")
        sink.open()
        sink.close()
        sink.write("s", "START: s", EXAMPLE)
        assert path.read_text() == ""
        assert not sink.is_open


class TestSizeLimits:
    def line_bytes(self) -> int:
        return len("26/11/29@22:11:55: START: s\n")

    def test_soft_alert_once_then_hard_closes(self, tmp_path: Path,
                                              timezone: None) -> None:
        """Exactly soft is within it; past soft: one alert; past hard: an
        alert and no more lines."""
        path = tmp_path / "svc.log"
        size = self.line_bytes()  # 28 bytes
        sink = FileSink(FileLog(str(path), soft=2 * size, hard=4 * size), "s")
        sink.open()
        with capturedLogs() as events:
            for _ in range(2):
                sink.write("s", "START: s", EXAMPLE)
            assert limit_alerts(list(events)) == []  # 2 lines == soft
            sink.write("s", "START: s", EXAMPLE)
            assert limit_alerts(list(events)) == ["log_soft"]
            sink.write("s", "START: s", EXAMPLE)
            sink.write("s", "START: s", EXAMPLE)   # 5 lines > hard
            sink.write("s", "START: s", EXAMPLE)   # dropped
        assert limit_alerts(list(events)) == ["log_soft", "log_hard"]
        assert len(read(path)) == 5
        assert not sink.is_open
        hard = next(e for e in events if e.get("limit") == "log_hard")
        assert hard["service_id"] == "s"
        assert (
            hard["log_format"].format(service_id="s")) == "hard limit exceeded on 's'; log closed"

    def test_soft_alert_text(self, tmp_path: Path) -> None:
        """The soft alert says xinetd's words with the service id."""
        path = tmp_path / "svc.log"
        path.write_text("x" * 50)
        sink = FileSink(FileLog(str(path), soft=10, hard=10_000), "svc")
        with capturedLogs() as events:
            sink.open()       # over soft already: alert on open, as xinetd
        alert = next(e for e in events if e.get("limit") == "log_soft")
        assert alert["log_format"].format(**alert) == (
            "soft limit exceeded on 'svc'")
        assert sink.is_open

    def test_open_over_hard_stays_closed(self, tmp_path: Path) -> None:
        """A file already past hard is closed at once on open."""
        path = tmp_path / "svc.log"
        path.write_text("x" * 500)
        sink = FileSink(FileLog(str(path), soft=10, hard=100), "s")
        with capturedLogs() as events:
            sink.open()
        assert limit_alerts(list(events)) == ["log_soft", "log_hard"]
        assert not sink.is_open

    def test_exit_line_restats(self, tmp_path: Path) -> None:
        """After an EXIT line the size is re-read, counting others' writes."""
        path = tmp_path / "svc.log"
        sink = FileSink(FileLog(str(path), soft=1000, hard=100_000), "s")
        sink.open()
        sink.write("s", "START: s", EXAMPLE)
        with path.open("a") as other:
            other.write("y" * 2000)
        assert sink.size < 1000
        with capturedLogs() as events:
            sink.write("s", "EXIT: s status=0", EXAMPLE)
        assert sink.size == path.stat().st_size
        assert limit_alerts(list(events)) == ["log_soft"]

    def test_reopen_after_rotation_resumes(self, tmp_path: Path,
                                           timezone: None) -> None:
        """A log closed at hard writes again after rotate + reopen."""
        path = tmp_path / "svc.log"
        sink = FileSink(FileLog(str(path), soft=10, hard=40), "s")
        sink.open()
        with capturedLogs():
            for _ in range(3):
                sink.write("s", "START: s", EXAMPLE)
        assert not sink.is_open
        path.rename(tmp_path / "svc.log.1")
        with capturedLogs() as events:
            sink.reopen()
            sink.write("s", "START: s", EXAMPLE)
        assert read(path) == ["26/11/29@22:11:55: START: s"]
        assert limit_alerts(list(events)) == ["log_soft"]


class TestRotation:
    def test_reopen_after_rename(self, tmp_path: Path, timezone: None) -> None:
        """logrotate renames; lines go to the old file until reopen, then to a new one."""
        path = tmp_path / "svc.log"
        rotated = tmp_path / "svc.log.1"
        sink = FileSink(FileLog(str(path)), "s")
        sink.open()
        sink.write("s", "START: s pid=1", EXAMPLE)
        path.rename(rotated)
        sink.write("s", "START: s pid=2", EXAMPLE)
        sink.reopen()
        sink.write("s", "START: s pid=3", EXAMPLE)
        assert [line[19:] for line in read(rotated)] == [
            "START: s pid=1", "START: s pid=2"]
        assert [line[19:] for line in read(path)] == ["START: s pid=3"]


class TestFailures:
    def test_unopenable_path_logged_once(self, tmp_path: Path) -> None:
        """A path that cannot be opened is reported once; writes are dropped."""
        path = tmp_path / "missing-dir" / "svc.log"
        sink = FileSink(FileLog(str(path)), "s")
        with capturedLogs() as events:
            sink.open()
            for _ in range(5):
                sink.write("s", "START: s", EXAMPLE)
        [error] = errors(list(events))
        assert (error["service_id"], error["operation"], error["errno"]) == (
            "s", "open", errno.ENOENT)
        assert error["path"] == str(path)
        assert not sink.is_open

    def test_reopen_retries_and_reports_again(self, tmp_path: Path) -> None:
        """reopen() tries again: one more report if it still fails, lines once fixed."""
        path = tmp_path / "later" / "svc.log"
        sink = FileSink(FileLog(str(path)), "s")
        with capturedLogs() as events:
            sink.open()
            sink.reopen()
        assert len(errors(list(events))) == 2
        path.parent.mkdir()
        sink.reopen()
        sink.write("s", "START: s", EXAMPLE)
        assert len(read(path)) == 1

    def test_full_disk_logged_once(self) -> None:
        """Writing to /dev/full (ENOSPC) is reported once and suspends the log."""
        sink = FileSink(FileLog("/dev/full"), "s")
        sink.open()
        with capturedLogs() as events:
            for _ in range(5):
                sink.write("s", "START: s", EXAMPLE)
        [error] = errors(list(events))
        assert (error["operation"], error["errno"]) == ("write", errno.ENOSPC)
        assert not sink.is_open

    def test_short_write_suspends(self, tmp_path: Path) -> None:
        """A short append (disk filling up) suspends the log; reopen resumes it."""
        calls: list[bytes] = []

        def short_writer(fd: int, data: bytes) -> int:
            calls.append(data)
            return len(data) - 1

        sink = FileSink(FileLog(str(tmp_path / "svc.log")), "s",
                        writer=short_writer)
        sink.open()
        with capturedLogs() as events:
            sink.write("s", "START: s", EXAMPLE)
            sink.write("s", "START: s", EXAMPLE)
        assert len(calls) == 1
        assert [e["errno"] for e in errors(list(events))] == [errno.ENOSPC]
        sink.reopen()
        assert sink.is_open

    def test_error_event_has_no_xinetd_line(self) -> None:
        """Failure reports are main-log events, never routed back as service lines."""
        sink = FileSink(FileLog("/dev/full"), "s")
        sink.open()
        with capturedLogs() as events:
            sink.write("s", "START: s", EXAMPLE)
        assert all("xinetd_line" not in e for e in events)


@given(st.lists(st.text(max_size=80), min_size=1, max_size=20))
def test_one_record_is_one_line(records: list[str]) -> None:
    """Whatever a line contains (CR, LF, surrogates), each write is one line of the file."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "svc.log"
        sink = FileSink(FileLog(str(path)), "s")
        sink.open()
        for record in records:
            sink.write("s", record, EXAMPLE)
        sink.close()
        assert path.read_bytes().count(b"\n") == len(records)


class Turn:
    """The reactor's end of turn, run by hand: what ``after_turn`` schedules."""

    def __init__(self) -> None:
        self.calls: list[Callable[[], None]] = []

    def __call__(self, call: Callable[[], None]) -> None:
        self.calls.append(call)

    def end(self) -> None:
        calls, self.calls = self.calls, []
        for call in calls:
            call()


class TestWritesGatheredPerTurn:
    def counting_writer(self, writes: list[bytes]) -> Callable[[int, bytes], int]:
        def write(fd: int, data: bytes) -> int:
            writes.append(data)
            return os.write(fd, data)
        return write

    def test_one_write_at_the_end_of_the_turn(self, tmp_path: Path, timezone: None) -> None:
        """The lines of one turn reach the file together, in order, by one
        write when the turn ends (one flush scheduled per turn), byte for
        byte what line-by-line writing gives."""
        path, plain = tmp_path / "svc.log", tmp_path / "plain.log"
        writes: list[bytes] = []
        turn = Turn()
        sink = FileSink(FileLog(str(path)), "s", writer=self.counting_writer(writes),
                        after_turn=turn)
        reference = FileSink(FileLog(str(plain)), "s")
        sink.open()
        reference.open()
        lines = ["START: s pid=0 from=127.0.0.1", "EXIT: s status=0 pid=0 duration=0(sec)",
                 "FAIL: s address from=10.0.0.1"]
        for line in lines:
            sink.write("s", line, EXAMPLE)
            reference.write("s", line, EXAMPLE)
        assert path.read_text() == "" and writes == [] and len(turn.calls) == 1
        turn.end()
        assert len(writes) == 1
        assert path.read_bytes() == plain.read_bytes()
        assert len(read(path)) == 3
        sink.write("s", lines[0], EXAMPLE + 1)
        turn.end()
        assert len(writes) == 2 and read(path)[-1] == "26/11/29@22:11:56: " + lines[0]

    def test_close_and_reopen_write_what_is_pending(self, tmp_path: Path,
                                                    timezone: None) -> None:
        """Stop (close) and rotation (reopen after the file was renamed) write
        the pending lines first: the rotated file keeps every line logged
        before the reopen, the new file gets the later ones."""
        path = tmp_path / "svc.log"
        turn = Turn()
        sink = FileSink(FileLog(str(path)), "s", after_turn=turn)
        sink.open()
        sink.write("s", "START: s old", EXAMPLE)
        path.rename(tmp_path / "svc.log.1")
        sink.reopen()
        assert read(tmp_path / "svc.log.1") == ["26/11/29@22:11:55: START: s old"]
        sink.write("s", "START: s new", EXAMPLE)
        sink.close()
        assert read(path) == ["26/11/29@22:11:55: START: s new"]
        turn.end()  # the flushes scheduled earlier find nothing left
        assert read(path) == ["26/11/29@22:11:55: START: s new"]

    def test_sink_with_limits_writes_each_line_at_once(self, tmp_path: Path) -> None:
        """Size limits are counted line by line: a sink with limits does not
        gather lines, and its hard limit closes it as before."""
        path = tmp_path / "svc.log"
        turn = Turn()
        size = len("26/11/29@22:11:55: START: s\n")
        sink = FileSink(FileLog(str(path), soft=size, hard=2 * size), "s", after_turn=turn)
        sink.open()
        with capturedLogs() as events:
            for _ in range(4):
                sink.write("s", "START: s", EXAMPLE)
        assert turn.calls == [] and len(read(path)) == 3
        assert limit_alerts(list(events)) == ["log_soft", "log_hard"]
        assert not sink.is_open

    def test_failed_write_at_the_end_of_the_turn(self, tmp_path: Path) -> None:
        """A write that fails at the end of the turn suspends the sink and is
        reported once, naming the service that logged the last line."""
        def full(fd: int, data: bytes) -> int:
            raise OSError(errno.ENOSPC, "No space left on device")

        turn = Turn()
        sink = FileSink(FileLog(str(tmp_path / "svc.log")), "a", writer=full, after_turn=turn)
        sink.open()
        sink.write("a", "START: a", EXAMPLE)
        sink.write("b", "START: b", EXAMPLE)
        with capturedLogs() as events:
            turn.end()
            sink.write("b", "START: b", EXAMPLE)
            turn.end()
        failures = errors(list(events))
        assert [(e["service_id"], e["operation"], e["errno"]) for e in failures] == [
            ("b", "write", errno.ENOSPC)]
        assert not sink.is_open
