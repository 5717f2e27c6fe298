"""
USERID and IDONLY in ``superd.access.factory``: the ident lookup runs on the
(fake) reactor beside the connection, which it holds only where it must.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from twisted.internet.error import ConnectionRefusedError
from twisted.internet.protocol import Protocol
from twisted.internet.testing import StringTransport
from twisted.python.failure import Failure

from superd.access import userid as userid_module
from superd.access.factory import AccessControlledFactory
from superd.access.state import AccessState
from superd.access.userid import MAX_REFUSED_LOOKUPS
from tests.access.helpers import RecordingHandler, connect, fail_lines, make_access, service, specs

IDENT_PORT = 11300
USERID = frozenset({"USERID"})


@pytest.fixture
def access(tmp_path: Path) -> Iterator[AccessState]:
    state = make_access(tmp_path, ident_port=IDENT_PORT)
    yield state
    state.stopService()


def factory_for(access: AccessState, **changes: Any) -> tuple[AccessControlledFactory,
                                                           RecordingHandler]:
    handler = RecordingHandler()
    return AccessControlledFactory(service(**changes), handler, access), handler


def identd(access: AccessState, index: int = -1) -> tuple[Protocol, StringTransport]:
    """Connect the lookup the factory started to a fake identd."""
    reactor: Any = access.runtime.reactor
    host, port, client_factory, _, bind = reactor.tcpClients[index]
    assert (host, port, bind) == ("127.0.0.2", IDENT_PORT, ("127.0.0.1", 0))
    protocol = client_factory.buildProtocol(None)
    transport = StringTransport()
    protocol.makeConnection(transport)
    return protocol, transport


def xinetd_lines(events: list[dict[str, Any]], word: str) -> list[str]:
    return [e["xinetd_line"] for e in events
            if str(e.get("xinetd_line", "")).startswith(word)]


def test_userid_logged_while_the_client_is_served(access: AccessState,
                                                  log_events: list[dict[str, Any]]) -> None:
    """An admitted client is served at once; the USERID line follows the answer."""
    factory, handler = factory_for(access, log_on_success=USERID)
    _, transport = connect(factory, "127.0.0.2")
    assert transport.protocol is handler.protocols[0]
    assert transport.producerState == "producing"
    ident, ident_transport = identd(access)
    assert ident_transport.value() == b"40000,7\r\n"
    ident.dataReceived(b"40000 , 7 : USERID : UNIX : alice\r\n")
    assert xinetd_lines(log_events, "USERID") == ["USERID: svc UNIX : alice"]
    assert ident_transport.disconnecting


def test_no_userid_no_lookup_and_no_gate(access: AccessState) -> None:
    """Without USERID the handler's protocol is returned directly, nothing is asked."""
    factory, handler = factory_for(access, log_on_success=frozenset({"HOST"}))
    protocol, _ = connect(factory, "127.0.0.2")
    assert protocol is handler.protocols[0]
    assert not access.runtime.reactor.tcpClients  # type: ignore[attr-defined]


def test_ident_service_never_looks_itself_up(access: AccessState) -> None:
    """USERID on a service at port 113/tcp is ignored: it would ask itself forever."""
    factory, handler = factory_for(access, port=113, log_on_success=USERID,
                                   log_on_failure=USERID)
    assert connect(factory, "127.0.0.2")[0] is handler.protocols[0]
    assert not access.runtime.reactor.tcpClients  # type: ignore[attr-defined]


def test_idonly_waits_paused_and_counted_then_serves(access: AccessState) -> None:
    """IDONLY holds the client, paused and counted, until identd names it."""
    factory, handler = factory_for(access, flags=frozenset({"IDONLY"}), per_source=1)
    _, transport = connect(factory, "127.0.0.2")
    assert transport.producerState == "paused" and not handler.sessions
    assert connect(factory, "127.0.0.2")[1].disconnecting  # the waiting one counts
    ident, _ = identd(access, 0)
    ident.dataReceived(b"40000,7:USERID:UNIX:bob\r\n")
    assert transport.protocol is handler.protocols[0]
    assert transport.producerState == "producing"


@pytest.mark.parametrize("answer", [b"40000,7:ERROR:NO-USER\r\n", None])
def test_idonly_refuses_without_an_answer(access: AccessState, log_events: list[dict[str, Any]],
                                          answer: bytes | None) -> None:
    """An ERROR reply or no identd at all: NOID line, closed, nothing served, count freed."""
    factory, handler = factory_for(access, flags=frozenset({"IDONLY"}), per_source=1)
    _, transport = connect(factory, "127.0.0.2")
    if answer is None:
        client_factory = access.runtime.reactor.tcpClients[0][2]  # type: ignore[attr-defined]
        client_factory.clientConnectionFailed(None, Failure(ConnectionRefusedError()))
        reason = "no server"
    else:
        identd(access)[0].dataReceived(answer)
        reason = "bad response"
    assert transport.disconnecting and not handler.sessions
    assert xinetd_lines(log_events, "NOID") == [f"NOID: svc 127.0.0.2 {reason}"]
    counts = access.counters.for_block("svc", factory.service.block_key)
    assert (counts.accepted, counts.refused) == (0, {"noid": 1})
    assert not connect(factory, "127.0.0.2")[1].disconnecting  # count released


def test_a_ban_cuts_off_an_idonly_client_waiting_for_its_answer(access: AccessState) -> None:
    """A client held (and counted) while identd is asked is ended by a ban
    of its source like any session: its connection is aborted."""
    factory, handler = factory_for(access, flags=frozenset({"IDONLY"}), per_source=1)
    gate, transport = connect(factory, "127.0.0.2")
    assert gate is not None and not transport.disconnecting
    access.bans.ban("127.0.0.2", 5, "trap")
    assert transport.disconnecting
    gate.connectionLost(Failure(Exception("aborted")))
    assert access.counter.sessions() == () and not handler.sessions


def test_idonly_client_leaving_cancels_the_lookup(access: AccessState) -> None:
    """A client that hangs up while identd is asked frees its count and the ident socket."""
    factory, handler = factory_for(access, flags=frozenset({"IDONLY"}), per_source=1)
    gate, _ = connect(factory, "127.0.0.2")
    _, ident_transport = identd(access)
    assert gate is not None
    gate.connectionLost(Failure(ConnectionRefusedError()))
    assert ident_transport.disconnecting and not handler.sessions
    assert not connect(factory, "127.0.0.2")[1].disconnecting


def test_userid_on_failure_holds_the_refused_connection(access: AccessState,
                                                        log_events: list[dict[str, Any]]) -> None:
    """A refused client gets FAIL at once, then stays open until its lookup ends."""
    factory, handler = factory_for(access, only_from=specs("127.0.0.9"),
                                   log_on_failure=frozenset({"HOST", "USERID"}))
    _, transport = connect(factory, "127.0.0.2")
    assert fail_lines(log_events) == ["FAIL: svc address from=127.0.0.2"]
    assert not transport.disconnecting
    identd(access)[0].dataReceived(b"40000,7:USERID:UNIX:mallory\r\n")
    assert transport.disconnecting and not handler.sessions
    assert xinetd_lines(log_events, "USERID") == ["USERID: svc UNIX:mallory"]


def test_refused_lookups_are_bounded(access: AccessState) -> None:
    """Past MAX_REFUSED_LOOKUPS pending lookups a refused client is closed at once."""
    factory, _ = factory_for(access, only_from=specs("127.0.0.9"),
                             log_on_failure=USERID)
    held = [connect(factory, "127.0.0.2")[1] for _ in range(MAX_REFUSED_LOOKUPS)]
    assert not any(t.disconnecting for t in held)
    assert connect(factory, "127.0.0.2")[1].disconnecting
    access.runtime.reactor.advance(31)  # every lookup times out
    assert all(t.disconnecting for t in held)
    assert not connect(factory, "127.0.0.2")[1].disconnecting


def test_refused_client_leaving_frees_its_lookup(access: AccessState) -> None:
    """A refused client that hangs up ends its lookup and gives its place back."""
    factory, _ = factory_for(access, only_from=specs("127.0.0.9"),
                             log_on_failure=USERID)
    for _ in range(MAX_REFUSED_LOOKUPS + 1):
        gate, transport = connect(factory, "127.0.0.2")
        assert gate is not None and not transport.disconnecting
        gate.connectionLost(Failure(ConnectionRefusedError()))
    assert factory.userid is not None and factory.userid.refused == 0


def test_served_lookups_are_bounded(access: AccessState, log_events: list[dict[str, Any]],
                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """Past MAX_SERVED_LOOKUPS running lookups clients are still served, without USERID
    (warned once), until lookups end."""
    monkeypatch.setattr(userid_module, "MAX_SERVED_LOOKUPS", 2)
    factory, handler = factory_for(access, log_on_success=USERID)
    for _ in range(4):
        connect(factory, "127.0.0.2")
    assert len(handler.protocols) == 4
    assert len(access.runtime.reactor.tcpClients) == 2  # type: ignore[attr-defined]
    busy = [e for e in log_events if e.get("reason") == "busy"]
    assert len(busy) == 1
    access.runtime.reactor.advance(31)  # both time out
    connect(factory, "127.0.0.2")
    assert len(access.runtime.reactor.tcpClients) == 3  # type: ignore[attr-defined]
