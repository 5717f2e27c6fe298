"""Tests for superd.daemon.findings: the configuration's findings in the start log."""

from __future__ import annotations

from typing import Any

from twisted.logger import LogLevel

from superd.config.errors import ConfigNote, ConfigWarning, Problem
from superd.config.model import (
    Configuration,
    DisabledReason,
    DisabledService,
    FailedService,
    Location,
)
from superd.daemon.findings import log_start
from superd.daemon.service import build_service
from tests.builders import local_echo_service
from tests.fakes import make_parts

PROBLEM = Problem("conf/amanda", 16, "amanda", "server",
                  "/usr/lib/amanda/amandad is not an executable file")
STARTED = Configuration(
    services=(local_echo_service(),),
    problems=(PROBLEM,),
    failed=(FailedService("amanda", "amanda", Location("conf/amanda", 3), (PROBLEM,)),),
    warnings=(ConfigWarning(Location("conf/echo", 4), "echo", "mdns", "ignored"),),
    notes=(ConfigNote("conf/daytime.conf", "skipped: includedir reads no name that"
                      " contains '.' or ends in '~'"),),
    disabled=(DisabledService("time", "time", Location("conf/time", 1),
                              DisabledReason.DISABLE),),
)


def _of(events: list[dict[str, Any]], name: str) -> list[dict[str, Any]]:
    return [e for e in events if e.get("event") == name]


def test_start_log_has_every_error_failed_service_warning_note_and_disabled_service(
        log_events: list[dict[str, Any]]) -> None:
    """Errors and failed services at error level with file and line; warnings;
    skipped files and disabled services at info level."""
    log_start(STARTED)
    (error,) = _of(log_events, "config_error")
    assert error["log_level"] is LogLevel.error
    assert (error["problem"], error["file"], error["line"], error["service_id"]) == (
        "conf/amanda:16: service amanda: server: /usr/lib/amanda/amandad is not an"
        " executable file", "conf/amanda", 16, "amanda")
    (failed,) = _of(log_events, "service_failed")
    assert failed["log_level"] is LogLevel.error
    assert (failed["service_id"], failed["where"], failed["problems"], failed["previous"]) == (
        "amanda", "conf/amanda:3", [error["problem"]], [])
    assert failed["log_format"].endswith("not started: {errors}")
    assert failed["errors"] == "1 error"
    (warning,) = _of(log_events, "config_warning")
    assert warning["log_level"] is LogLevel.warn
    (note,) = _of(log_events, "config_note")
    assert note["log_level"] is LogLevel.info and note["path"] == "conf/daytime.conf"
    (disabled,) = _of(log_events, "service_disabled")
    assert disabled["log_level"] is LogLevel.info
    assert (disabled["service_id"], disabled["reason"]) == ("time", "disable = yes")


def test_the_daemon_logs_them_once_before_binding(log_events: list[dict[str, Any]]) -> None:
    """The tree logs the findings when it starts (once), before its sockets;
    the ready event counts the failed and disabled services."""
    top = build_service(STARTED, make_parts(), install_signal=lambda *a: None)
    top.privilegedStartService()
    top.startService()
    names = [e.get("event") for e in log_events]
    assert names.count("service_failed") == 1
    assert names.index("service_failed") < names.index("listening")
    top._announce_ready()
    (ready,) = _of(log_events, "ready")
    assert (ready["failed"], ready["disabled"], ready["services"]) == (1, 1, 1)
    assert "{failed} services failed" in ready["log_format"]
    top.stopService()


def test_ready_says_nothing_of_failures_when_there_are_none(
        log_events: list[dict[str, Any]]) -> None:
    """A configuration without errors: the ready line is xinetd-like and short."""
    top = build_service(Configuration((local_echo_service(),)), make_parts(),
                        install_signal=lambda *a: None)
    top.privilegedStartService()
    top.startService()
    top._announce_ready()
    (ready,) = _of(log_events, "ready")
    assert ready["log_format"] == "superd ready: {count} sockets listening"
    assert ready["failed"] == 0
    assert _of(log_events, "service_failed") == [] == _of(log_events, "config_error")
    top.stopService()


def test_failed_services_of_a_garbage_file_are_listed_up_to_a_bound(
        log_events: list[dict[str, Any]]) -> None:
    """At most MAX_FILE_ERRORS failed services of one file are logged one by
    one; one more event counts the others."""
    from superd.config.errors import MAX_FILE_ERRORS
    from superd.daemon.findings import log_failed

    log_failed([FailedService(f"s{n}", f"s{n}", Location("conf/junk", n), (PROBLEM,))
                for n in range(1, 31)])
    events = _of(log_events, "service_failed")
    assert len(events) == MAX_FILE_ERRORS + 1
    assert events[-1]["count"] == 10 and "service_id" not in events[-1]


def test_the_supervisor_is_told_that_services_failed(tmp_path: Any) -> None:
    """READY=1 comes with a status line counting the failed services."""
    import socket

    path = str(tmp_path / "notify")
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as listener:
        listener.bind(path)
        listener.settimeout(1)
        top = build_service(STARTED, make_parts(), install_signal=lambda *a: None)
        top._environ = {"NOTIFY_SOCKET": path}
        top._announce_ready()
        assert listener.recv(512) == (b"READY=1\nSTATUS=serving; 1 service failed"
                                      b" (superd status lists them)")
