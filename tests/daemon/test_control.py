"""Tests for superd.daemon.control: the control socket's line protocol."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from twisted.internet.testing import MemoryReactorClock, StringTransport

from superd.core.paths import control_path
from superd.daemon.control import (
    MAX_REQUEST,
    TIMEOUT,
    ControlFactory,
    listen_control,
    parse_request,
)


def connect(handlers: dict[str, Any] | None = None) -> tuple[Any, StringTransport, Any]:
    clock = MemoryReactorClock()
    factory = ControlFactory(handlers if handlers is not None else
                             {"status": lambda r: {"ok": True, "status": {"x": 1}}}, clock)
    protocol = factory.buildProtocol(None)
    transport = StringTransport()
    protocol.makeConnection(transport)
    return protocol, transport, clock


def reply(transport: StringTransport) -> dict[str, Any]:
    data = transport.value()
    assert data.endswith(b"\n") and data.count(b"\n") == 1
    answer: dict[str, Any] = json.loads(data)
    return answer


@pytest.mark.parametrize("line", [b"status\n", b'{"command": "status"}\n', b"status\r\n"])
def test_status_request_answered_in_one_line_then_closed(line: bytes) -> None:
    """A word or a JSON object asks; the answer is one JSON line, then the close."""
    protocol, transport, _ = connect()
    protocol.dataReceived(line)
    assert reply(transport) == {"ok": True, "status": {"x": 1}}
    assert transport.disconnecting


@pytest.mark.parametrize("junk", [b"\xff\xfe\n", b"{not json\n", b"[1, 2]\n", b'{"command": 5}\n',
                                  b"rm -rf /\n", b"\n"])
def test_junk_gets_an_error_not_a_crash(junk: bytes) -> None:
    """Undecodable, malformed or odd requests are answered with ok=false."""
    protocol, transport, _ = connect()
    protocol.dataReceived(junk)
    answer = reply(transport)
    assert answer["ok"] is False and answer["error"].startswith("bad request")


def test_unknown_command_lists_the_known_ones() -> None:
    """An unknown command says which commands exist."""
    protocol, transport, _ = connect()
    protocol.dataReceived(b"reboot\n")
    assert reply(transport) == {"ok": False, "error": "unknown command (known: status)"}


def test_oversized_request_is_refused() -> None:
    """More than MAX_REQUEST bytes without a newline ends the conversation."""
    protocol, transport, _ = connect()
    protocol.dataReceived(b"a" * (MAX_REQUEST + 1))
    assert "longer than" in reply(transport)["error"]
    assert transport.disconnecting


def test_silent_client_times_out() -> None:
    """A client that never asks is answered and closed after TIMEOUT seconds."""
    protocol, transport, clock = connect()
    clock.advance(TIMEOUT)
    assert "time limit" in reply(transport)["error"]


def test_failing_handler_is_logged_and_answered(log_events: list[dict[str, Any]]) -> None:
    """A handler that raises gives an internal-error answer and a logged traceback."""
    def broken(request: dict[str, Any]) -> dict[str, Any]:
        raise RuntimeError("boom")

    protocol, transport, _ = connect({"status": broken})
    protocol.dataReceived(b"status\n")
    assert reply(transport)["error"].startswith("internal error")
    assert any(e.get("event") == "control_error" and e.get("log_failure") for e in log_events)


def test_parse_request_keeps_json_fields() -> None:
    """JSON requests keep their other fields for the handler."""
    assert parse_request(b'{"command": "status", "verbose": true}') == \
        {"command": "status", "verbose": True}


# -- the client, against a real socket ---------------------------------------------

class UnixReactor:
    def __init__(self, error: Exception | None = None) -> None:
        self.calls: list[tuple[Any, ...]] = []
        self.error = error

    def listenUNIX(self, path: str, factory: Any, backlog: int = 50, mode: int = 0o666,
                   wantPID: bool = False) -> str:
        self.calls.append((path, factory, mode, wantPID))
        if self.error is not None:
            raise self.error
        return "port"


def test_listen_control_uses_mode_0600_and_a_pid_lock(tmp_path: Path) -> None:
    """The daemon's socket is private to its user and guarded by a PID lock file."""
    reactor = UnixReactor()
    factory = ControlFactory({}, reactor)
    assert listen_control(reactor, str(tmp_path), factory) == "port"
    assert reactor.calls == [(control_path(str(tmp_path)), factory, 0o600, True)]


def test_listen_control_failure_is_logged_not_raised(tmp_path: Path,
                                                      log_events: list[dict[str, Any]]) -> None:
    """A socket that cannot be made costs the status command, not the daemon."""
    from twisted.internet.error import CannotListenError

    reactor = UnixReactor(CannotListenError(None, "x", "Cannot acquire lock"))
    assert listen_control(reactor, str(tmp_path), ControlFactory({}, reactor)) is None
    assert any(e.get("event") == "control_error" for e in log_events)


def test_deferred_answer_waits_and_second_line_is_ignored() -> None:
    """A handler may answer later (a reload); the timeout no longer applies, extra lines do not."""
    from twisted.internet.defer import Deferred

    pending: Deferred[dict[str, Any]] = Deferred()
    calls: list[Any] = []

    def slow(request: dict[str, Any]) -> Deferred[dict[str, Any]]:
        calls.append(request)
        return pending

    protocol, transport, clock = connect({"reload": slow})
    protocol.dataReceived(b"reload\nreload\n")
    clock.advance(TIMEOUT * 3)
    assert transport.value() == b"" and len(calls) == 1
    pending.callback({"ok": True})
    assert reply(transport) == {"ok": True}
