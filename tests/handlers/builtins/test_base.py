"""Tests for superd.handlers.builtins.base: what every stream builtin shares."""

from __future__ import annotations

from typing import Any

from twisted.internet.error import ConnectionAborted
from twisted.internet.testing import StringTransport
from twisted.logger import formatEvent
from twisted.python.failure import Failure

from superd.handlers.builtins.discard import DiscardStream
from tests.handlers.builtins.conftest import make_runtime, make_service, make_session


def exits(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [e for e in events if e.get("event") == "exit"]


def ended_by_superd(service: Any) -> tuple[Any, Any]:
    """A discard session that superd ends (as the access layer would) after 3 s."""
    runtime = make_runtime()
    session = make_session(runtime, "discard")
    proto = DiscardStream(service, runtime, session)
    proto.makeConnection(StringTransport())
    session.serve_with(lambda: proto.connectionLost(Failure(ConnectionAborted())))
    runtime.reactor.advance(3)
    assert session.terminate("banned")
    return session, proto


def test_a_session_superd_ends_logs_exit_with_the_reason(
        main_log: list[dict[str, Any]]) -> None:
    """Ending a builtin's session early logs EXIT with the reason on the
    main log, even when the service logs no EXIT of its own; the xinetd
    line follows the service's flags and keeps xinetd's shape."""
    session, _ = ended_by_superd(make_service("discard"))
    assert session.ended
    (exit_,) = exits(main_log)
    assert formatEvent(exit_) == (
        "EXIT discard pid=0 status=0 duration=3.000s reason=banned")
    assert (exit_["reason"], exit_["xinetd_line"]) == ("banned", None)
    main_log.clear()
    ended_by_superd(make_service("discard", log_on_success=frozenset({"EXIT", "DURATION"})))
    (exit_,) = exits(main_log)
    assert exit_["xinetd_line"] == "EXIT: discard status=0 duration=3(sec)"


def test_an_ordinary_end_logs_no_reason(main_log: list[dict[str, Any]]) -> None:
    """A client that closes ends its session with no EXIT on the main log
    (it goes to the per-connection channel), and never with a reason."""
    runtime = make_runtime()
    session = make_session(runtime, "discard")
    proto = DiscardStream(make_service("discard"), runtime, session)
    proto.makeConnection(StringTransport())
    proto.connectionLost(Failure(ConnectionAborted()))
    assert session.ended and session.end_reason is None
    assert exits(main_log) == []
