"""Tests for superd.handlers.spawn.handler: ExternalHandler with a fake spawner."""

from __future__ import annotations

import errno
import socket
from typing import Any, Dict, List

import attrs
from twisted.internet.protocol import Protocol
from zope.interface.verify import verifyObject

from superd.config.model import Credentials
from superd.core.interfaces import IStreamHandler
from superd.core.runtime import Runtime, RuntimeOptions
from superd.core.session import Peer, Session
from superd.handlers.spawn.handler import ExternalHandler
from superd.observe.events import EV_EXIT, EV_REFUSE, EV_START, REASON_EXEC, REASON_FORK
from superd.proc.credentials import CredentialPlan
from tests.fakes import USER, FakeBackgroundSpawner, FakeProcessReactor, fake_processes, make_parts
from tests.handlers.spawn.helpers import (
    connected_server,
    external_service,
    fake_parts,
    named,
)

PEER = Peer("127.0.0.1", 40000)
LOCAL = Peer("127.0.0.1", 2222)


def serve(handler: ExternalHandler, runtime: Any):  # type: ignore[no-untyped-def]
    session = Session("ssh", PEER, LOCAL, runtime.seconds())
    ended: List[Session] = []
    session.on_end(ended.append)
    protocol = handler.protocol_for(session)
    server, client = connected_server(protocol, runtime.reactor)
    return session, ended, client


def test_provides_stream_handler() -> None:
    """ExternalHandler provides IStreamHandler."""
    parts, _ = fake_parts()
    runtime = parts.runtime
    handler = ExternalHandler(external_service(), runtime, parts.processes)
    assert verifyObject(IStreamHandler, handler)


def test_connection_spawns_child_with_socket_and_env(events: List[Dict[str, Any]]) -> None:
    """An admitted connection starts the server with the socket on 0, 1, 2,
    the peer in the environment, the session's pid set and START logged."""
    parts, spawner = fake_parts()
    runtime = parts.runtime
    handler = ExternalHandler(external_service(), runtime, parts.processes)
    session, ended, client = serve(handler, runtime)
    (request,) = spawner.requests
    assert request.executable == "/usr/sbin/sshd" and request.argv == ("sshd", "-i")
    assert set(request.fds) == {0, 1, 2} and len(set(request.fds.values())) == 1
    assert request.env["REMOTE_HOST"] == "127.0.0.1"
    assert request.env["TCPLOCALPORT"] == "2222" and request.env["LANG"] == "C"
    assert session.pid == 1000 and ended == []
    (start,) = named(events, EV_START)
    assert start["xinetd_line"] == "START: ssh pid=1000 from=127.0.0.1"
    assert parts.processes.running == 1
    client.close()


def test_child_exit_logs_and_ends_session(events: List[Dict[str, Any]]) -> None:
    """When the child is reaped: EXIT with status, pid and duration, the
    session ends (releasing its counts) and the running count drops."""
    parts, spawner = fake_parts()
    runtime = parts.runtime
    handler = ExternalHandler(external_service(), runtime, parts.processes)
    session, ended, client = serve(handler, runtime)
    runtime.reactor.advance(7.5)
    spawner.exit(1000, 3)
    (exit_,) = named(events, EV_EXIT)
    assert exit_["xinetd_line"] == "EXIT: ssh status=3 pid=1000 duration=7(sec)"
    assert ended == [session] and parts.processes.running == 0
    client.close()


def test_killed_child_logs_signal(events: List[Dict[str, Any]]) -> None:
    """A child killed by a signal logs signal=N."""
    parts, spawner = fake_parts()
    runtime = parts.runtime
    handler = ExternalHandler(external_service(), runtime, parts.processes)
    session, ended, client = serve(handler, runtime)
    spawner.kill(1000, 9)
    assert named(events, EV_EXIT)[0]["signal"] == 9
    client.close()


def test_exec_failure(events: List[Dict[str, Any]]) -> None:
    """A program that cannot be executed: FAIL exec with the reason, EXIT
    status 127, the session ends and the client sees the connection close."""
    parts, spawner = fake_parts()
    runtime = parts.runtime
    spawner.fail_next(REASON_EXEC, errno.ENOENT)
    handler = ExternalHandler(external_service(), runtime, parts.processes)
    session, ended, client = serve(handler, runtime)
    (fail,) = named(events, EV_REFUSE)
    assert fail["xinetd_line"] == "FAIL: ssh exec from=127.0.0.1"
    assert fail["detail"] == "No such file or directory"
    assert named(events, EV_EXIT)[0]["status"] == 127
    assert named(events, EV_START) == []
    assert ended == [session] and parts.processes.running == 0
    client.settimeout(5)
    assert client.recv(1) == b""
    client.close()


def test_fork_failure_has_no_exit_line(events: List[Dict[str, Any]]) -> None:
    """No process could be created: FAIL fork, no EXIT, daemon keeps going."""
    parts, spawner = fake_parts()
    runtime = parts.runtime
    spawner.fail_next(REASON_FORK, errno.EAGAIN)
    handler = ExternalHandler(external_service(), runtime, parts.processes)
    session, ended, client = serve(handler, runtime)
    assert named(events, EV_REFUSE)[0]["reason"] == REASON_FORK
    assert named(events, EV_EXIT) == [] and ended == [session]
    client.close()
    session2, ended2, client2 = serve(handler, runtime)
    assert session2.pid == 1000 and ended2 == []
    client2.close()


def test_credentials_umask_nice_rlimits_reach_request() -> None:
    """user/groups, umask, nice and rlimit_* are resolved at build time and
    carried by every request (rlimits through the prlimit prefix)."""
    parts, spawner = fake_parts()
    runtime = parts.runtime
    service = external_service(
        credentials=Credentials("nobody", 65534, None, 65534, True),
        umask=0o027, nice=5, rlimits={"files": 64})
    session, ended, client = serve(ExternalHandler(service, runtime, parts.processes), runtime)
    (request,) = spawner.requests
    assert request.credentials == CredentialPlan(65534, 65534, (4, 27, 65534))
    assert request.umask == 0o027 and request.nice is not None
    assert request.executable == "/usr/bin/prlimit"
    assert request.argv == ("/usr/bin/prlimit", "--nofile=64:64", "--",
                            "/usr/sbin/sshd", "-i")
    client.close()


def test_not_root_gets_no_credentials() -> None:
    """A non-root superd never asks to change credentials."""
    parts, spawner = fake_parts(identity=USER)
    runtime = parts.runtime
    service = external_service(credentials=Credentials("u", None, None, None, False))
    session, ended, client = serve(ExternalHandler(service, runtime, parts.processes), runtime)
    assert spawner.requests[0].credentials is None
    client.close()


def test_connection_lost_before_hand_off_ends_session() -> None:
    """If the connection goes away before the protocol is connected, the
    session still ends."""
    parts, _ = fake_parts()
    runtime = parts.runtime
    handler = ExternalHandler(external_service(), runtime, parts.processes)
    session = Session("ssh", PEER, LOCAL, 0.0)
    ended: List[Session] = []
    session.on_end(ended.append)
    handler.protocol_for(session).connectionLost(None)
    assert ended == [session]


def adopt(handler: ExternalHandler, runtime: Any, queued: bytes):  # type: ignore[no-untyped-def]
    """A connection on which superd already queued ``queued`` (a banner), then
    given to the handler's protocol, as the access layer's gate does."""
    session = Session("ssh", PEER, LOCAL, 0.0)
    ended: List[Session] = []
    session.on_end(ended.append)
    server, client = connected_server(Protocol(), runtime.reactor)
    server.write(queued)
    protocol = handler.protocol_for(session)
    server.protocol = protocol
    protocol.makeConnection(server)
    return session, ended, server, client


def test_banner_is_drained_before_hand_off() -> None:
    """Bytes superd queued (a banner) are written out by the reactor first;
    only then is the socket handed to the child, so the client gets the
    banner before the server's output and the reactor never blocks."""
    parts, spawner = fake_parts()
    runtime = parts.runtime
    handler = ExternalHandler(external_service(), runtime, parts.processes)
    session, ended, server, client = adopt(handler, runtime, b"banner\r\n")
    assert spawner.requests == []  # waiting for the banner to go out
    server.doWrite()  # what the reactor does when the socket is writable
    runtime.reactor.advance(0.01)
    assert len(spawner.requests) == 1 and session.pid == 1000 and ended == []
    client.settimeout(5)
    assert client.recv(100) == b"banner\r\n"
    client.close()


def test_client_that_never_takes_the_banner_is_dropped() -> None:
    """A client that never reads a large banner is dropped after the drain
    timeout without any child being started; its session ends."""
    parts, spawner = fake_parts()
    runtime = parts.runtime
    handler = ExternalHandler(external_service(), runtime, parts.processes)
    session, ended, server, client = adopt(handler, runtime, b"x" * (8 << 20))
    for _ in range(10):
        server.doWrite()  # fills the socket buffers; the client reads nothing
    runtime.reactor.advance(29.0)
    assert ended == [] and spawner.requests == []
    runtime.reactor.pump([0.5] * 4)
    assert ended == [session] and spawner.requests == []
    client.close()


def test_client_gone_while_the_banner_drains_starts_no_child() -> None:
    """A client that hangs up while superd's banner is still queued gets no
    child, even once the queue empties: its session ended, so nothing runs."""
    parts, spawner = fake_parts()
    runtime = parts.runtime
    handler = ExternalHandler(external_service(), runtime, parts.processes)
    session, ended, server, client = adopt(handler, runtime, b"banner\r\n")
    server.protocol.connectionLost(None)  # the hang-up, seen before the write
    assert ended == [session]
    server.doWrite()
    runtime.reactor.advance(0.01)
    assert spawner.requests == []
    client.close()


def accepted_pair() -> "tuple[socket.socket, socket.socket, int]":
    """An accepted loopback socket (TakingPort hands over its descriptor),
    its client, and the listening port."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)
        client = socket.create_connection(listener.getsockname(), timeout=10)
        accepted, _ = listener.accept()
        return accepted, client, listener.getsockname()[1]


def test_bare_descriptor_is_handed_to_the_child(events: List[Dict[str, Any]]) -> None:
    """serve_fd (TakingPort's path): the accepted descriptor is the child's
    fds 0, 1 and 2; the environment names both ends, the local one asked of
    the kernel when the port could not tell; the descriptor stays the
    caller's; START now, EXIT and the end of the session when it is reaped."""
    parts, spawner = fake_parts()
    runtime = parts.runtime
    handler = ExternalHandler(external_service(), runtime, parts.processes)
    accepted, client, port = accepted_pair()
    fd = accepted.fileno()
    session = Session("ssh", PEER, None, runtime.seconds())
    ended: List[Session] = []
    session.on_end(ended.append)
    handler.serve_fd(session, fd)
    (request,) = spawner.requests
    assert request.fds == {0: fd, 1: fd, 2: fd}
    assert request.env["TCPLOCALPORT"] == str(port) and request.env["REMOTE_PORT"] == "40000"
    assert accepted.fileno() == fd and session.pid == 1000 and ended == []
    assert named(events, EV_START)[0]["pid"] == 1000
    spawner.exit(1000, 0)
    assert named(events, EV_EXIT)[0]["status"] == 0 and ended == [session]
    assert parts.processes.running == 0
    accepted.close()
    client.close()


def test_known_local_address_needs_no_socket() -> None:
    """A port bound to one address tells the session its local end: the
    environment uses it, and the descriptor is never even looked at (a
    closed one would make the kernel complain)."""
    parts, spawner = fake_parts()
    runtime = parts.runtime
    handler = ExternalHandler(external_service(), runtime, parts.processes)
    session = Session("ssh", PEER, Peer("127.0.0.9", 2222), runtime.seconds())
    handler.serve_fd(session, 1 << 20)  # not an open descriptor
    (request,) = spawner.requests
    assert request.env["TCPLOCALIP"] == "127.0.0.9" and request.env["TCPLOCALPORT"] == "2222"


def test_socket_options_reach_the_descriptor() -> None:
    """NODELAY and KEEPALIVE are set on the descriptor itself, which stays open."""
    parts, spawner = fake_parts()
    runtime = parts.runtime
    service = attrs.evolve(external_service(), flags=frozenset({"NODELAY", "KEEPALIVE"}))
    handler = ExternalHandler(service, runtime, parts.processes)
    accepted, client, _ = accepted_pair()
    handler.serve_fd(Session("ssh", PEER, Peer("127.0.0.1", 1), runtime.seconds()),
                     accepted.fileno())
    assert accepted.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) == 1
    assert accepted.getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE) == 1
    assert len(spawner.requests) == 1
    accepted.close()
    client.close()


def test_bare_descriptor_exec_failure(events: List[Dict[str, Any]]) -> None:
    """A server that cannot be executed: FAIL exec, EXIT 127 and the end of
    the session; closing the descriptor is left to the port."""
    parts, spawner = fake_parts()
    runtime = parts.runtime
    spawner.fail_next(REASON_EXEC, errno.ENOENT)
    handler = ExternalHandler(external_service(), runtime, parts.processes)
    session = Session("ssh", PEER, Peer("127.0.0.1", 1), runtime.seconds())
    ended: List[Session] = []
    session.on_end(ended.append)
    handler.serve_fd(session, 5)
    assert named(events, EV_REFUSE)[0]["xinetd_line"] == "FAIL: ssh exec from=127.0.0.1"
    assert named(events, EV_EXIT)[0]["status"] == 127 and named(events, EV_START) == []
    assert ended == [session]


def test_access_factory_hands_external_connections_over_directly(tmp_path: Any) -> None:
    """The wiring of the fast path: a real access factory around a real
    ExternalHandler takes the accepted descriptor (TAKEN) and the child gets
    it, rather than falling back to a Twisted transport; with a banner to
    write first there is no fast path."""
    from superd.access.factory import AccessControlledFactory
    from superd.net.takingport import TAKEN

    parts, spawner = fake_parts()
    runtime = parts.runtime
    service = external_service(port=0)
    handler = ExternalHandler(service, runtime, parts.processes)
    factory = AccessControlledFactory(service, handler, parts.access)
    assert factory.take_connection is not None
    local = Peer("127.0.0.1", 2222)
    assert factory.take_connection(9, ("127.0.0.1", 40000), local) is TAKEN
    assert [r.fds[0] for r in spawner.requests] == [9]
    assert spawner.requests[0].env["TCPLOCALPORT"] == "2222"
    banner = tmp_path / "banner"
    banner.write_text("hello\n")
    gated = attrs.evolve(service, banner=str(banner))
    handler = ExternalHandler(gated, runtime, parts.processes)
    factory = AccessControlledFactory(gated, handler, parts.access)
    assert factory.take_connection is None


def test_ending_the_session_stops_the_childs_process_group(
        events: List[Dict[str, Any]]) -> None:
    """A session superd ends (a ban, a reload) gets SIGTERM to its child's
    process group, SIGKILL after --grace if that is ignored, and its EXIT
    says why, with the real signal."""
    import signal

    parts, spawner = fake_parts()
    runtime = parts.runtime
    handler = ExternalHandler(external_service(), runtime, parts.processes)
    session, ended, client = serve(handler, runtime)
    spawner.ignore_term.add(1000)
    runtime.reactor.advance(2)
    assert session.terminate("banned")
    assert spawner.signals == [(1000, signal.SIGTERM), (1000, signal.SIGCONT)]
    assert ended == []
    runtime.reactor.advance(5.0)
    assert spawner.signals[-1] == (1000, signal.SIGKILL)
    (exit_,) = named(events, EV_EXIT)
    assert (exit_["reason"], exit_["signal"]) == ("banned", signal.SIGKILL)
    assert exit_["xinetd_line"] == "EXIT: ssh signal=9 pid=1000 duration=7(sec)"
    assert ended == [session] and parts.processes.running == 0
    client.close()
def background_parts() -> "tuple[Any, FakeBackgroundSpawner]":
    runtime = Runtime(FakeProcessReactor(), RuntimeOptions(grace=5.0))
    spawner = FakeBackgroundSpawner()
    processes, _ = fake_processes(runtime.reactor, spawner=spawner)
    return make_parts(runtime, processes=processes), spawner


def test_descriptor_started_off_the_reactor_thread(events: List[Dict[str, Any]]) -> None:
    """With a spawner that starts children in the background, serve_fd
    returns before the child exists: the session stays open (counted), START
    comes with the pid, EXIT and the end of the session when it is reaped."""
    parts, spawner = background_parts()
    handler = ExternalHandler(external_service(), parts.runtime, parts.processes)
    session = Session("ssh", PEER, Peer("127.0.0.1", 1), parts.runtime.seconds())
    ended: List[Session] = []
    session.on_end(ended.append)
    handler.serve_fd(session, 5)
    assert named(events, EV_START) == [] and ended == [] and parts.processes.running == 1
    spawner.finish()
    assert session.pid == 1000 and named(events, EV_START)[0]["pid"] == 1000
    spawner.exit(1000, 3)
    assert named(events, EV_EXIT)[0]["status"] == 3 and ended == [session]
    assert parts.processes.running == 0


def test_exec_failure_reported_after_a_background_start(events: List[Dict[str, Any]]) -> None:
    """An exec failure found by the worker: the same FAIL exec and EXIT 127
    lines as a synchronous spawn, and the session ends."""
    parts, spawner = background_parts()
    spawner.fail_next(REASON_EXEC, errno.ENOENT)
    handler = ExternalHandler(external_service(), parts.runtime, parts.processes)
    session = Session("ssh", PEER, Peer("127.0.0.1", 1), parts.runtime.seconds())
    ended: List[Session] = []
    session.on_end(ended.append)
    handler.serve_fd(session, 5)
    assert ended == []
    spawner.finish()
    assert named(events, EV_REFUSE)[0]["xinetd_line"] == "FAIL: ssh exec from=127.0.0.1"
    assert named(events, EV_EXIT)[0]["status"] == 127 and named(events, EV_START) == []
    assert ended == [session] and parts.processes.running == 0
