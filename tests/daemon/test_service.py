"""Tests for superd.daemon.service: the service tree built from a configuration."""

from __future__ import annotations

import signal
import socket
import types
from pathlib import Path
from typing import Any

import pytest
from twisted.application.service import Service
from twisted.internet.address import IPv4Address
from twisted.internet.defer import Deferred
from twisted.internet.testing import MemoryReactorClock

from superd.config.errors import ConfigError
from superd.config.model import (
    Configuration,
    Extensions,
    FileLog,
    Location,
    ServiceConfig,
    SocketType,
)
from superd.core.runtime import Runtime, RuntimeOptions
from superd.core.session import Peer, Session
from superd.daemon.assembly import Builders
from superd.daemon.notify import ready as notify_ready
from superd.daemon.parts import Parts
from superd.daemon.service import build_service
from superd.net.listener import Listener
from superd.net.sockets import BindError
from superd.observe.servicelog import ServiceLogRouter, ServiceLogService
from tests.builders import echo_service
from tests.fakes import make_parts


def make_service(**kw: Any) -> ServiceConfig:
    """``echo_service`` as the UNLISTED builtin."""
    return echo_service(**{"type": frozenset({"INTERNAL", "UNLISTED"}), **kw})


class Recorder:
    """Records constructor calls of a stand-in collaborator class."""

    def __init__(self) -> None:
        self.calls: list[tuple[Any, ...]] = []

    def __call__(self, *args: Any) -> tuple[Any, ...]:
        self.calls.append(args)
        return ("made", *args)


class FakeReactor(MemoryReactorClock):
    def __init__(self) -> None:
        super().__init__()
        self.from_thread: list[Any] = []
        self.udp: list[tuple[int, Any, str]] = []

    def callFromThread(self, f: Any, *args: Any) -> None:
        self.from_thread.append(f)

    def listenUDP(self, port: int, protocol: Any, interface: str = "",
                  maxPacketSize: int = 8192) -> Any:
        self.udp.append((port, protocol, interface))
        return FakeUDPPort(IPv4Address("UDP", interface, port or 5555))


class FakeUDPPort:
    def __init__(self, host: Any) -> None:
        self.host = host
        self.stopped = False

    def getHost(self) -> Any:
        return self.host

    def stopListening(self) -> None:
        self.stopped = True


class ServiceRecorder(Recorder):
    """Records wait_service calls and returns a real (idle) service."""

    def __call__(self, *args: Any) -> Any:
        from twisted.application.service import Service

        self.calls.append(args)
        return Service()


@pytest.fixture
def collaborators(monkeypatch: pytest.MonkeyPatch) -> types.SimpleNamespace:
    """Recorders standing in for the access factory, the builtins and the spawn
    handlers, passed to the assembly as its builders."""
    fakes = types.SimpleNamespace(
        factory=Recorder(), datagram=Recorder(), stream_handler=Recorder(),
        datagram_handler=Recorder(), external=Recorder(), wait=ServiceRecorder(),
    )
    fakes.builders = Builders(
        stream_factory=fakes.factory, datagram_protocol=fakes.datagram,
        stream_builtin=fakes.stream_handler, datagram_builtin=fakes.datagram_handler,
        external=fakes.external, wait_service=fakes.wait)
    return fakes


def build_with(fakes: types.SimpleNamespace, *args: Any, **kw: Any) -> Any:
    """``build_service`` with the recorders as the assembly's builders."""
    return build_service(*args, builders=fakes.builders, **kw)


def runtime(reactor: Any = None, processes: Any = None, **options: Any) -> Parts:
    """The daemon's parts on ``reactor`` (a FakeReactor by default)."""
    return make_parts(Runtime(reactor=reactor or FakeReactor(),
                              options=RuntimeOptions(**options)), processes=processes)


def config(*services: ServiceConfig) -> Configuration:
    return Configuration(services=services)


def test_stream_builtin_one_listener_per_address_sharing_a_factory(
        collaborators: types.SimpleNamespace) -> None:
    """A builtin on two addresses: two listeners, one access factory around the builtin."""
    rt = runtime(backlog=64)
    top = build_with(collaborators, config(make_service(bind=("127.0.0.1", "::1"))), rt)
    listeners = list(top.listeners)
    assert [(c.address.host, c.address.port) for c in listeners] == [
        ("127.0.0.1", 10007), ("::1", 10007)]
    (handler_call,) = collaborators.stream_handler.calls
    (factory_call,) = collaborators.factory.calls
    assert factory_call == (handler_call[0], ("made", *handler_call), rt.access)
    assert rt.runtime.reactor.tcpServers == []  # nothing bound until started


def test_privileged_start_binds_and_logs_listening(
        collaborators: types.SimpleNamespace, log_events: list[dict[str, Any]]) -> None:
    """Ports open in privilegedStartService, each logging a structured listening event."""
    rt = runtime(backlog=64)
    top = build_with(collaborators, config(make_service(bind=("127.0.0.1", "::1"))), rt)
    top.privilegedStartService()
    servers = rt.runtime.reactor.tcpServers
    assert [(port, backlog, iface) for port, _f, backlog, iface in servers] == [
        (10007, 64, "127.0.0.1"), (10007, 64, "::1")]
    listening = [e for e in log_events if e.get("event") == "listening"]
    assert [(e["service_id"], e["name"], e["host"], e["port"], e["protocol"])
            for e in listening] == [("echo", "echo", "127.0.0.1", 10007, "tcp"),
                                    ("echo", "echo", "::1", 10007, "tcp")]


def test_datagram_builtin_gets_protected_ports_and_a_protocol_per_address(
        collaborators: types.SimpleNamespace) -> None:
    """UDP builtins learn every UDP builtin port; each address gets its own protocol."""
    echo = make_service(socket_type=SocketType.DGRAM, protocol="udp", wait=True,
                        bind=("127.0.0.1", "::1"))
    time_ = make_service(name="time", id="time-udp", socket_type=SocketType.DGRAM,
                         protocol="udp", wait=True, port=10037)
    rt = runtime()
    top = build_with(collaborators, config(echo, time_), rt)
    assert [call[2] for call in collaborators.datagram_handler.calls] == [
        frozenset({10007, 10037})] * 2
    top.privilegedStartService()
    assert [(port, iface) for port, _p, iface in rt.runtime.reactor.udp] == [
        (10007, "127.0.0.1"), (10007, "::1"), (10037, "::")]
    assert len(collaborators.datagram.calls) == 3


def test_sensor_has_no_handler(collaborators: types.SimpleNamespace) -> None:
    """A SENSOR service is wrapped with handler None: the access layer traps it."""
    sensor = make_service(name="ftp", id="ftp", flags=frozenset({"SENSOR"}))
    build_with(collaborators, config(sensor), runtime())
    assert [call[1] for call in collaborators.factory.calls] == [None]
    assert collaborators.stream_handler.calls == []


def test_external_wait_no_uses_external_handler(collaborators: types.SimpleNamespace) -> None:
    """An external wait=no stream server is served by ExternalHandler behind access control."""
    ssh = make_service(name="ssh", id="ssh", type=frozenset(), server="/usr/sbin/sshd")
    build_with(collaborators, config(ssh), runtime())
    assert [call[0].id for call in collaborators.external.calls] == ["ssh"]
    assert collaborators.factory.calls[0][1][0] == "made"


def test_external_wait_yes_is_one_wait_service_per_address(
        collaborators: types.SimpleNamespace) -> None:
    """wait=yes external servers become whole wait services, one per bind address."""
    tftp = make_service(name="tftp", id="tftp", type=frozenset(), server="/usr/sbin/in.tftpd",
                        socket_type=SocketType.DGRAM, protocol="udp", wait=True,
                        bind=("127.0.0.1", "::1"), port=10069)
    rt = runtime()
    build_with(collaborators, config(tftp), rt)
    assert [(call[0].id, *call[1:]) for call in collaborators.wait.calls] == [
        ("tftp", "127.0.0.1", rt.access, rt.processes),
        ("tftp", "::1", rt.access, rt.processes)]


def _unavailable() -> tuple[ServiceConfig, ServiceConfig]:
    udp = make_service(name="u", id="u", socket_type=SocketType.DGRAM, protocol="udp",
                       type=frozenset(), server="/bin/true", lines={"wait": Location("conf/u", 4)})
    mine = make_service(name="mine", id="mine", wait=True, extensions=Extensions(factory="x:y"),
                        lines={"factory": Location("conf/m", 6)})
    return udp, mine


def test_unavailable_services_refused_together_when_all_or_nothing(
        collaborators: types.SimpleNamespace) -> None:
    """Without isolation, every service whose handler cannot be built is
    reported in one pass, by file and line, and nothing is built."""
    with pytest.raises(ConfigError) as caught:
        build_with(collaborators, config(*_unavailable(), make_service(port=7)), runtime(),
                   isolate=False)
    assert [str(p) for p in caught.value.problems] == [
        "conf/u:4: service u: wait: datagram external servers need wait = yes",
        "conf/m:6: service mine: factory: user protocols are stream services with wait = no",
    ]


def test_unavailable_services_fail_alone(collaborators: types.SimpleNamespace) -> None:
    """Isolated (the default), a service whose handler cannot be built is
    failed with its problem and the others are built."""
    udp, mine = _unavailable()
    echo = make_service(port=7)
    top = build_with(collaborators, config(udp, echo, mine), runtime())
    assert [s.id for s, _ in top.groups] == ["echo"]
    assert top.configuration.services == (echo,)
    assert [(f.id, [str(p) for p in f.problems]) for f in top.configuration.failed] == [
        ("u", ["conf/u:4: service u: wait: datagram external servers need wait = yes"]),
        ("mine", ["conf/m:6: service mine: factory: user protocols are stream services"
                  " with wait = no"])]
    assert top.configuration.error_count == 2
    assert [c.address.describe() for c in top.listeners] == ["tcp [::]:7"]


def test_bind_failure_reported_and_earlier_ports_closed(
        collaborators: types.SimpleNamespace) -> None:
    """A bind failure goes to on_bind_error after the ports already open are closed."""
    failures: list[BindError] = []

    def on_bind_error(error: BindError) -> Any:
        failures.append(error)
        raise SystemExit(71)

    opened: list[Any] = []

    def open_ok(address: Any) -> Any:
        port = FakeUDPPort(IPv4Address("TCP", "127.0.0.1", 1))
        opened.append(port)
        return port

    def open_fail(address: Any) -> Any:
        raise BindError(address, "Address already in use")

    from superd.daemon.service import SuperdService
    from superd.net.sockets import listen_addresses

    parts = runtime()
    service_log = ServiceLogService(ServiceLogRouter(config(), parts.runtime.reactor))
    top = SuperdService(parts, config(), service_log, on_bind_error=on_bind_error)
    a, b = listen_addresses(make_service(bind=("127.0.0.1", "::1")))
    top.add_listeners([Listener(a, open_ok), Listener(b, open_fail)])
    with pytest.raises(SystemExit):
        top.privilegedStartService()
    assert [str(f) for f in failures] == [
        "conf/echo:1: service echo: cannot listen on tcp [::1]:10007: Address already in use"]
    assert opened[0].stopped


class FakeProcesses:
    def __init__(self) -> None:
        self.grace: list[float] = []
        self.done: Deferred[None] = Deferred()

    def stop_all(self, grace: float) -> Deferred[None]:
        self.grace.append(grace)
        return self.done


def test_sighup_is_harmless_and_stop_waits_for_children(
        collaborators: types.SimpleNamespace, log_events: list[dict[str, Any]]) -> None:
    """SIGHUP reopens the service logs via the reactor; stop waits for stop_all(grace)."""
    installed: list[tuple[int, Any]] = []

    def install(signum: int, handler: Any) -> str:
        installed.append((signum, handler))
        return "previous"

    rt = runtime(grace=2.5, processes=FakeProcesses())
    top = build_with(collaborators, config(make_service()), rt, install_signal=install)
    top.privilegedStartService()
    top.startService()
    ((signum, handler),) = installed
    assert signum == signal.SIGHUP
    handler(signal.SIGHUP, None)
    (hop,) = rt.runtime.reactor.from_thread
    hop()
    stopped = top.stopService()
    assert installed[-1] == (signal.SIGHUP, "previous")
    assert rt.processes.grace == [2.5]
    results: list[Any] = []
    stopped.addCallback(results.append)
    assert results == []
    rt.processes.done.callback(None)
    assert results == [None]


def test_ready_event_when_reactor_runs(collaborators: types.SimpleNamespace,
                                       log_events: list[dict[str, Any]]) -> None:
    """One 'ready' event, counting listeners, once the reactor is running."""
    rt = runtime()
    top = build_with(collaborators, config(make_service(bind=("127.0.0.1", "::1"))), rt,
                        install_signal=lambda *a: None)
    top.privilegedStartService()
    top.startService()
    assert not [e for e in log_events if e.get("event") == "ready"]
    for hook, args, kw in rt.runtime.reactor.whenRunningHooks:
        hook(*args, **kw)
    (ready,) = [e for e in log_events if e.get("event") == "ready"]
    assert (ready["count"], ready["services"]) == (2, 1)


def test_notify_ready_sends_to_notify_socket(tmp_path: Any) -> None:
    """READY=1 goes to $NOTIFY_SOCKET when set; nothing happens when unset."""
    path = str(tmp_path / "notify")
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as listener:
        listener.bind(path)
        assert notify_ready({"NOTIFY_SOCKET": path})
        assert listener.recv(64) == b"READY=1"
    assert not notify_ready({})


def test_protected_ports_are_udp_builtin_ports() -> None:
    """Only UDP builtins with a fixed port are protected from replies."""
    udp = dict(socket_type=SocketType.DGRAM, protocol="udp", wait=True)
    services = (make_service(**udp, port=7), make_service(port=13),
                make_service(**udp, port=0, id="e0"),
                make_service(**udp, port=69, type=frozenset(), server="/bin/true"))
    assert config(*services).protected_ports == frozenset({7})


def test_real_collaborators_wire_up() -> None:
    """With the real access and builtins modules, a builtin service assembles."""
    top = build_service(config(make_service()), runtime())
    (listener,) = list(top.listeners)
    assert isinstance(listener, Listener)
    assert listener.address.describe() == "tcp [::]:10007"


class FakeServiceLog(Service):
    def __init__(self, order: list[str]) -> None:
        self.order = order
        self.router = self
        self.reopened = 0

    def startService(self) -> None:
        super().startService()
        self.order.append("log started")

    def stopService(self) -> None:
        super().stopService()
        self.order.append("log stopped")

    def reopen(self) -> None:
        self.reopened += 1


def test_service_log_outlives_children_and_reopens_on_hup(
        collaborators: types.SimpleNamespace) -> None:
    """Service logs start first, stop after every child is gone, and reopen on SIGHUP."""
    order: list[str] = []
    rt = runtime(processes=FakeProcesses())
    log = FakeServiceLog(order)
    top = build_with(collaborators, config(make_service()), rt, install_signal=lambda *a: None,
                     service_log=log)
    top.privilegedStartService()
    top.startService()
    assert order == ["log started"]
    top.reload()
    assert log.reopened == 1
    top.stopService()
    assert order == ["log started"]  # children still stopping
    rt.processes.done.callback(None)
    assert order == ["log started", "log stopped"]


def test_build_service_wires_service_logs() -> None:
    """build_service gives the tree a service-log router for the configuration."""
    top = build_service(config(make_service()), runtime())
    assert top.service_log is not None
    assert top.service_log.router.targets() == {}


def test_service_log_lines_are_written_at_the_end_of_the_reactor_turn(
        tmp_path: Path) -> None:
    """The daemon's service-log router gathers FILE lines on its reactor: a
    line is in the file once the reactor has run the turn it was logged in."""
    path = tmp_path / "echo.log"
    reactor = ClockReactor()
    top = build_service(config(make_service(log_type=FileLog(str(path)))), runtime(reactor))
    top.service_log.router.write_line("echo", "echo", "START: echo pid=0")
    assert path.read_text() == ""
    reactor.advance(0)
    assert path.read_text().endswith(": START: echo pid=0\n")
    top.service_log.router.close()


def test_sigterm_stops_the_reactor_once_without_reraising(
        collaborators: types.SimpleNamespace, log_events: list[dict[str, Any]]) -> None:
    """SIGTERM stops the reactor itself (so twistd exits 0, not 143); a
    second SIGTERM while stopping is logged, not passed on."""
    installed: dict[int, Any] = {}
    rt = runtime()
    rt.runtime.reactor.running = True
    top = build_with(collaborators, config(make_service()), rt,
                        install_signal=lambda signum, h: installed.__setitem__(signum, h))
    top._guard_stop_signals()
    guarded = installed[signal.SIGTERM]
    guarded(signal.SIGTERM, None)
    guarded(signal.SIGTERM, None)
    (hop,) = rt.runtime.reactor.from_thread
    hop()
    assert rt.runtime.reactor.hasStopped
    hop()  # the reactor already stopping: no ReactorNotRunning escapes
    assert any("already stopping" in str(e.get("log_format")) for e in log_events)


class ClockReactor(FakeReactor, MemoryReactorClock):
    """FakeReactor with a clock: the drain's grace timer."""


def _session(service_id: str = "echo") -> Session:
    return Session(service_id, Peer("127.0.0.1", 4000), None, 0.0)


def test_stop_waits_for_live_sessions_to_end(
        collaborators: types.SimpleNamespace, log_events: list[dict[str, Any]]) -> None:
    """After the sockets close, stop waits for sessions served in-process to
    end (a restart cuts no exchange short), then finishes at once."""
    rt = runtime(ClockReactor(), grace=5.0)
    counter = rt.access.counter
    sessions = [_session(), _session()]
    for session in sessions:
        counter.acquire(session)
    top = build_with(collaborators, config(make_service()), rt, install_signal=lambda *a: None)
    results: list[Any] = []
    top.stopService().addCallback(results.append)
    assert results == []
    assert any(e.get("event") == "draining" and e["count"] == 2 for e in log_events)
    sessions[0].end()
    rt.runtime.reactor.advance(1)
    assert results == []
    sessions[1].end()
    assert results == [None]
    assert not rt.runtime.reactor.getDelayedCalls()


def test_stop_gives_up_on_sessions_after_grace(
        collaborators: types.SimpleNamespace, log_events: list[dict[str, Any]]) -> None:
    """A session still open after --grace does not hold stop up: the reactor
    closes it; the timeout is logged with the count left."""
    rt = runtime(ClockReactor(), grace=5.0)
    session = _session()
    rt.access.counter.acquire(session)
    top = build_with(collaborators, config(make_service()), rt, install_signal=lambda *a: None)
    results: list[Any] = []
    top.stopService().addCallback(results.append)
    rt.runtime.reactor.advance(4.9)
    assert results == []
    rt.runtime.reactor.advance(0.2)
    assert results == [None]
    (timeout,) = [e for e in log_events if e.get("event") == "drain_timeout"]
    assert timeout["count"] == 1
    session.end()  # later ends are harmless


def test_ready_counts_service_sockets_only(collaborators: types.SimpleNamespace,
                                           log_events: list[dict[str, Any]]) -> None:
    """The ready event counts each service's sockets, wait=yes ones included,
    and not helper services (metrics, ban store) that are children too."""
    rt = runtime()
    top = build_with(collaborators, config(make_service(bind=("127.0.0.1", "::1")),
                               make_service(name="one", id="one", server="/bin/true",
                                            type=frozenset({"UNLISTED"}), wait=True,
                                            bind=("127.0.0.1",))), rt,
                        install_signal=lambda *a: None)
    Service().setServiceParent(top)
    top._announce_ready()
    (ready,) = [e for e in log_events if e.get("event") == "ready"]
    assert (ready["count"], ready["services"]) == (3, 2)
