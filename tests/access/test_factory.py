"""Tests for ``superd.access.factory``: the seam every peer passes through."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from twisted.internet.defer import Deferred
from twisted.internet.testing import MemoryReactorClock

from superd.access.factory import (
    ANSWER_BATCH,
    AccessControlledDatagramProtocol,
    AccessControlledFactory,
    admit_datagram_source,
)
from superd.access.gate import Gate
from superd.access.loadavg import CachedLoad
from superd.access.resolver import HostNames
from superd.access.state import AccessState
from superd.config.model import CPS, AddressKind, AddressSpec, SocketType, TimeInterval
from superd.core.session import Peer
from superd.net.takingport import TAKEN
from superd.proc.spawner import SpawnRequest
from tests.access.helpers import (
    RecordingHandler,
    connect,
    fail_lines,
    make_access,
    service,
    specs,
)

HOST = frozenset({"HOST"})


@pytest.fixture
def access(tmp_path: Path) -> Iterator[AccessState]:
    state = make_access(tmp_path)
    yield state
    state.stopService()


def factory_for(access: AccessState, **changes: Any) -> tuple[AccessControlledFactory,
                                                           RecordingHandler]:
    changes.setdefault("log_on_failure", HOST)
    handler = RecordingHandler()
    return AccessControlledFactory(service(**changes), handler, access), handler


def test_admitted_peer_gets_a_counted_session(access: AccessState) -> None:
    """An admitted peer is served by the handler's protocol, counted until it ends."""
    factory, handler = factory_for(access, per_source=1)
    protocol, transport = connect(factory, "::ffff:10.0.0.1")
    assert protocol is handler.protocols[0]
    (session,) = handler.sessions
    assert session.peer == Peer("10.0.0.1", 40000)
    assert transport.value() == b"served\n"
    assert connect(factory, "10.0.0.1")[0] is None
    protocol.connectionLost(None)  # type: ignore[union-attr]
    assert connect(factory, "10.0.0.1")[0] is not None


def test_refused_peer_is_never_served_and_logged(access: AccessState,
                                                 log_events: list[dict[str, Any]]) -> None:
    """A refusal returns None (close without reading) and logs FAIL."""
    factory, handler = factory_for(access, only_from=specs("127.0.0.0"))
    assert connect(factory, "10.0.0.1")[0] is None
    assert connect(factory, "127.0.0.2")[0] is not None
    assert len(handler.sessions) == 1
    assert fail_lines(log_events) == ["FAIL: svc address from=10.0.0.1"]


def test_per_source_five(access: AccessState, log_events: list[dict[str, Any]]) -> None:
    """per_source = 5: five concurrent from one source, not six; others still served."""
    factory, _ = factory_for(access, per_source=5)
    served = [connect(factory, "127.0.0.2")[0] for _ in range(6)]
    assert [p is not None for p in served] == [True] * 5 + [False]
    assert connect(factory, "127.0.0.3")[0] is not None
    assert fail_lines(log_events) == ["FAIL: svc per_source_limit from=127.0.0.2"]


def test_instances(access: AccessState, log_events: list[dict[str, Any]]) -> None:
    """instances = 2 refuses the third live session with service_limit."""
    factory, _ = factory_for(access, instances=2)
    served = [connect(factory, f"127.0.0.{i}")[0] for i in (2, 3, 4)]
    assert [p is not None for p in served] == [True, True, False]
    assert fail_lines(log_events) == ["FAIL: svc service_limit from=127.0.0.4"]


def test_cps_refuses_31st_and_recovers(access: AccessState,
                                       log_events: list[dict[str, Any]]) -> None:
    """cps = 30 10 through the factory, on the injected clock."""
    clock: MemoryReactorClock = access.runtime.reactor
    clock.advance(500.1)
    factory, _ = factory_for(access, cps=CPS(30, 10))
    results = [connect(factory, "127.0.0.2")[0] is not None for _ in range(31)]
    assert results == [True] * 30 + [False]
    clock.advance(5)
    assert connect(factory, "127.0.0.3")[0] is None
    clock.advance(5)
    assert connect(factory, "127.0.0.3")[0] is not None
    assert fail_lines(log_events) == [
        "FAIL: svc connections per second from=127.0.0.2",
        "FAIL: svc connections per second from=127.0.0.3",
    ]


def test_blocks_sharing_an_id_count_on_their_own(access: AccessState) -> None:
    """Two blocks with one id on two binds (the seed's two ``service ssh``):
    instances, per_source and cps each count per block, as each xinetd entry
    does; a block rebuilt by a reload keeps its counts."""
    clock: MemoryReactorClock = access.runtime.reactor
    clock.advance(500.1)
    limits = dict(instances=1, per_source=1, cps=CPS(2, 10))
    one, _ = factory_for(access, bind=("127.0.0.1",), **limits)
    two, _ = factory_for(access, bind=("127.0.0.2",), **limits)
    assert connect(one, "127.0.0.5")[0] is not None
    assert connect(one, "127.0.0.6")[0] is None  # block one: instances
    assert connect(two, "127.0.0.5")[0] is not None  # same source, other block
    assert connect(two, "127.0.0.7")[0] is None  # block two: instances
    # cps: two attempts a second per block; each block has made two.
    assert connect(one, "127.0.0.8")[0] is None
    again, _ = factory_for(access, bind=("127.0.0.1",), **limits)
    assert again.service.block_key == one.service.block_key
    assert connect(again, "127.0.0.9")[0] is None  # still paused, still full


def test_order_ban_first(access: AccessState, log_events: list[dict[str, Any]]) -> None:
    """A banned source is refused as ``address`` before any other check."""
    access.bans.ban("127.0.0.3", 10, "trap")
    factory, _ = factory_for(access, instances=0)
    assert connect(factory, "127.0.0.3")[0] is None
    assert connect(factory, "127.0.0.4")[0] is None
    assert fail_lines(log_events) == ["FAIL: svc address from=127.0.0.3",
                                      "FAIL: svc service_limit from=127.0.0.4"]


def test_global_limit_applies_to_spawning_services_only(tmp_path: Path) -> None:
    """--limit refuses external servers with process_limit, not builtins."""
    access = make_access(tmp_path, limit=1)
    assert access.processes is not None
    access.processes.spawn(SpawnRequest("/bin/cat", ("cat",), {}, {0: 7}), "other", None)
    external, _ = factory_for(access, type=frozenset(), server="/bin/cat")
    builtin, _ = factory_for(access, id="echo")
    assert connect(external, "127.0.0.2")[0] is None
    assert connect(builtin, "127.0.0.2")[0] is not None
    access.stopService()


def test_sensor_bans_everywhere(access: AccessState, log_events: list[dict[str, Any]]) -> None:
    """A sensor hit is refused and bans the source from other services, TCP and UDP."""
    sensor = AccessControlledFactory(
        service(id="trap", flags=frozenset({"SENSOR"}), deny_time=10,
                log_on_failure=HOST), None, access)
    assert connect(sensor, "127.0.0.3")[0] is None
    factory, _ = factory_for(access)
    assert connect(factory, "127.0.0.3")[0] is None
    assert connect(factory, "127.0.0.2")[0] is not None
    handler = RecordingHandler()
    udp = AccessControlledDatagramProtocol(
        service(socket_type=SocketType.DGRAM, protocol="udp", wait=True,
                log_on_failure=HOST), handler, access)
    udp.datagramReceived(b"x", ("127.0.0.3", 5000))
    udp.datagramReceived(b"y", ("127.0.0.2", 5000))
    assert handler.datagrams == [(b"y", Peer("127.0.0.2", 5000))]
    assert fail_lines(log_events) == ["FAIL: trap address from=127.0.0.3",
                                      "FAIL: svc address from=127.0.0.3",
                                      "FAIL: svc address from=127.0.0.3"]


def test_sensor_bans_the_slash_64_under_v6_source_prefix(
        access: AccessState, log_events: list[dict[str, Any]]) -> None:
    """A sensor with v6_source_prefix = 64 bans the whole /64 of the source:
    every service (whatever its own prefix) refuses its other addresses;
    the next /64 is still served.  The FAIL lines of one /64 share one
    rate-limit window, so walking its addresses cannot flood the log."""
    sensor = AccessControlledFactory(
        service(id="trap", flags=frozenset({"SENSOR"}), deny_time=10, v6_source_prefix=64,
                log_on_failure=HOST), None, access)
    assert connect(sensor, "2001:db8:1:2::1")[0] is None
    factory, _ = factory_for(access)
    refused = [connect(factory, f"2001:db8:1:2:{n:x}::1")[0] for n in range(1, 41)]
    assert refused == [None] * 40
    assert connect(factory, "2001:db8:1:3::1")[0] is not None
    walker, _ = factory_for(access, id="walk", v6_source_prefix=64)
    for n in range(1, 41):
        connect(walker, f"2001:db8:1:2:{n:x}::1")
    walked = [line for line in fail_lines(log_events) if line.startswith("FAIL: walk")]
    assert len(walked) == access.stream_refusals.burst


def test_hosts_deny_append_applies_at_once(access: AccessState, tmp_path: Path,
                                           log_events: list[dict[str, Any]]) -> None:
    """Appending to hosts.deny refuses the host on its next connection (libwrap)."""
    factory, _ = factory_for(access, flags=frozenset())
    assert connect(factory, "127.0.0.4")[0] is not None
    with open(tmp_path / "hosts.deny", "a") as f:
        f.write("ALL: 127.0.0.4\n")
    assert connect(factory, "127.0.0.4")[0] is None
    nolibwrap, _ = factory_for(access, id="free")
    assert connect(nolibwrap, "127.0.0.4")[0] is not None
    assert fail_lines(log_events) == ["FAIL: svc libwrap from=127.0.0.4"]


def test_banners(access: AccessState, tmp_path: Path) -> None:
    """banner before the checks, banner_success before the handler, banner_fail on refusal."""
    for name, text in (("b", "hello\n"), ("ok", "welcome\n"), ("no", "go away\n")):
        (tmp_path / name).write_text(text)
    factory, handler = factory_for(
        access, banner=str(tmp_path / "b"), banner_success=str(tmp_path / "ok"),
        banner_fail=str(tmp_path / "no"), only_from=specs("127.0.0.2"))
    (tmp_path / "b").write_text("changed\n")  # read once, at load
    _, served = connect(factory, "127.0.0.2")
    assert served.value() == b"hello\nwelcome\nserved\n"
    assert served.protocol is handler.protocols[0]
    assert served.producerState == "producing"
    _, refused = connect(factory, "127.0.0.3")
    assert refused.value() == b"hello\ngo away\n"
    assert refused.write_closed and not handler.protocols[1:]
    access.runtime.reactor.advance(3)
    assert refused.disconnecting


def test_banner_fail_without_banner(access: AccessState, tmp_path: Path) -> None:
    """Without ``banner`` a refused peer still gets banner_fail, then an abort."""
    (tmp_path / "no").write_text("busy\n")
    factory, _ = factory_for(access, banner_fail=str(tmp_path / "no"), instances=0)
    protocol, transport = connect(factory, "127.0.0.2")
    assert protocol is not None and transport.value() == b"busy\n"
    access.runtime.reactor.advance(3)
    assert transport.disconnecting


class Lookups:
    """A resolver run whose answers the test gives."""

    def __init__(self) -> None:
        self.waiting: list[Deferred[HostNames]] = []

    def __call__(self, call: Any) -> Deferred[HostNames]:
        d: Deferred[HostNames] = Deferred()
        self.waiting.append(d)
        return d


def test_name_rules_gate_the_connection(tmp_path: Path) -> None:
    """With a .domain rule the connection waits, paused, for the lookup."""
    lookups = Lookups()
    access = make_access(tmp_path, lookups=lookups)
    domain = AddressSpec(".example.com", AddressKind.DOMAIN, name="example.com")
    factory, handler = factory_for(access, only_from=(domain,))
    _, transport = connect(factory, "127.0.0.2")
    assert transport.producerState == "paused" and not handler.sessions
    lookups.waiting[0].callback(HostNames(frozenset({"a.example.com"})))
    assert transport.protocol is handler.protocols[0]
    assert transport.producerState == "producing"
    _, other = connect(factory, "127.0.0.3")
    lookups.waiting[1].callback(HostNames(frozenset({"a.example.org"})))
    assert other.disconnecting and len(handler.sessions) == 1
    _, again = connect(factory, "127.0.0.2")  # cached: no gate, no lookup
    assert again.protocol is handler.protocols[1] and len(lookups.waiting) == 2
    access.stopService()


def test_policy_exception_denies(access: AccessState, log_events: list[dict[str, Any]]) -> None:
    """A policy that raises is logged and denies with its reason word."""
    def broken() -> float:
        raise OSError("no /proc")
    access.load = CachedLoad(broken)
    factory, _ = factory_for(access, max_load=1.0)
    assert connect(factory, "127.0.0.2")[0] is None
    assert fail_lines(log_events) == ["FAIL: svc load from=127.0.0.2"]
    assert any(e.get("event") == "policy_error" for e in log_events)


def test_handler_failure_refuses_and_releases(access: AccessState,
                                              log_events: list[dict[str, Any]]) -> None:
    """A handler that raises refuses the peer (FAIL fork) and frees its count."""
    class Failing(RecordingHandler):
        def protocol_for(self, session: Any) -> Any:
            raise RuntimeError("cannot serve")
    factory = AccessControlledFactory(service(per_source=1, log_on_failure=HOST),
                                      Failing(), access)
    assert connect(factory, "127.0.0.2")[0] is None
    assert connect(factory, "127.0.0.2")[0] is None
    assert fail_lines(log_events) == ["FAIL: svc fork from=127.0.0.2"] * 2


def test_datagram_refusals_logged_once_a_minute(access: AccessState,
                                                log_events: list[dict[str, Any]]) -> None:
    """Refused datagrams are dropped; one FAIL per source per 60 s."""
    handler = RecordingHandler()
    udp = AccessControlledDatagramProtocol(
        service(socket_type=SocketType.DGRAM, protocol="udp", wait=True,
                only_from=specs("127.0.0.2"), log_on_failure=HOST), handler, access)
    sent: list[tuple[bytes, Any]] = []

    class Transport:
        def write(self, data: bytes, addr: Any) -> None:
            sent.append((data, addr))

    udp.transport = Transport()  # type: ignore[assignment]
    for _ in range(3):
        udp.datagramReceived(b"no", ("127.0.0.3", 5000))
    udp.datagramReceived(b"yes", ("127.0.0.2", 5000))
    access.runtime.reactor.advance(60)
    udp.datagramReceived(b"no", ("127.0.0.3", 5000))
    assert sent == [(b"yes", ("127.0.0.2", 5000))]
    assert fail_lines(log_events) == ["FAIL: svc address from=127.0.0.3"] * 2


def test_admit_datagram_source(access: AccessState) -> None:
    """The wait=yes check runs the full list, and sensors trip."""
    svc = service(socket_type=SocketType.DGRAM, protocol="udp", wait=True,
                  type=frozenset(), server="/usr/sbin/in.tftpd",
                  no_access=specs("127.0.0.5"))
    assert admit_datagram_source(svc, Peer("127.0.0.2", 69), access)
    assert not admit_datagram_source(svc, Peer("127.0.0.5", 69), access)
    trap = service(id="trap", flags=frozenset({"SENSOR"}), deny_time=-1)
    assert not admit_datagram_source(trap, Peer("127.0.0.2", 69), access)
    assert not admit_datagram_source(svc, Peer("127.0.0.2", 69), access)


def test_minimal_policies_without_configuration(access: AccessState) -> None:
    """A service with nothing configured runs only the ban check and xinetd's default cps."""
    factory, _ = factory_for(access)
    assert [type(p).__name__ for p in factory.policies] == ["BanPolicy", "ConnectionRate"]
    factory, _ = factory_for(access, id="nocps", cps=CPS(0, 0))
    assert [type(p).__name__ for p in factory.policies] == ["BanPolicy"]


def test_full_order(tmp_path: Path) -> None:
    """Policies run in the documented order (ban list, address lists, hosts files,
    access_times, cps, instances, per_source, load, --limit)."""
    access = make_access(tmp_path, limit=4)
    factory, _ = factory_for(
        access, flags=frozenset(), only_from=specs("127.0.0.0"),
        access_times=(TimeInterval(0, 1440),), cps=CPS(5, 1), instances=3,
        per_source=2, max_load=9.0, type=frozenset(), server="/bin/cat")
    assert [type(p).__name__ for p in factory.policies] == [
        "BanPolicy", "AddressPolicy", "HostsAccessPolicy", "TimePolicy",
        "ConnectionRate", "InstancesPolicy", "PerSourcePolicy", "LoadPolicy",
        "GlobalLimitPolicy"]


@pytest.mark.parametrize("decided_at_once", [True, False])
def test_gate_passes_bytes_given_to_it_on(tmp_path: Path, decided_at_once: bool) -> None:
    """Bytes handed to a gate (tcpmux passes those after its request line) reach the
    protocol it hands over to, whether it handed over already or does so later."""
    lookups = Lookups()
    access = make_access(tmp_path, lookups=lookups)
    (tmp_path / "b").write_text("hello\n")
    if decided_at_once:
        factory, handler = factory_for(access, banner=str(tmp_path / "b"))
    else:
        domain = AddressSpec(".example.com", AddressKind.DOMAIN, name="example.com")
        factory, handler = factory_for(access, only_from=(domain,))
    gate, _ = connect(factory, "127.0.0.2")
    assert gate is not None
    gate.dataReceived(b"rest of ")
    gate.dataReceived(b"line")
    if not decided_at_once:
        lookups.waiting[0].callback(HostNames(frozenset({"a.example.com"})))
    assert handler.protocols[0].received == b"rest of line"
    access.stopService()


class DropWatch:
    """Stands in for KernelDrop: records the banned hosts it is told about."""

    def __init__(self) -> None:
        self.refused: list[str] = []

    def refused_banned(self, host: str, now: float) -> None:
        self.refused.append(host)

    def stop(self) -> None:
        """Nothing to stop (``setup.detach`` calls it)."""


def test_every_path_tells_the_kernel_drop_about_banned_sources(access: AccessState) -> None:
    """A banned source refused by a stream factory, a datagram protocol or the
    wait = yes datagram check counts toward kernel dropping; other refusals do not."""
    watch = DropWatch()
    access.kernel_drop = watch  # type: ignore[assignment]
    assert access.bans is not None
    access.bans.ban("127.0.0.3", 10, "trap")
    factory, _ = factory_for(access, only_from=specs("127.0.0.3"))
    udp_service = service(socket_type=SocketType.DGRAM, protocol="udp", wait=True,
                          type=frozenset(), server="/usr/sbin/in.tftpd")
    udp = AccessControlledDatagramProtocol(udp_service, RecordingHandler(), access)
    assert connect(factory, "127.0.0.3")[0] is None
    assert connect(factory, "127.0.0.4")[0] is None  # refused by address, not banned
    udp.datagramReceived(b"x", ("127.0.0.3", 5000))
    assert not admit_datagram_source(udp_service, Peer("127.0.0.3", 69), access)
    assert watch.refused == ["127.0.0.3"] * 3


def test_datagram_refusals_are_logged_per_source_port(access: AccessState,
                                                      log_events: list[dict[str, Any]]) -> None:
    """Datagram FAIL lines are limited per source address *and port*: a second
    client on the same host is still logged within the minute."""
    udp = AccessControlledDatagramProtocol(
        service(socket_type=SocketType.DGRAM, protocol="udp", wait=True,
                only_from=specs("127.0.0.2"), log_on_failure=HOST),
        RecordingHandler(), access)
    for port in (5000, 5000, 5001):
        udp.datagramReceived(b"no", ("127.0.0.3", port))
    assert fail_lines(log_events) == ["FAIL: svc address from=127.0.0.3"] * 2


class DescriptorTaker(RecordingHandler):
    """A handler that serves bare accepted descriptors (as external servers do)."""

    def __init__(self, fail: bool = False) -> None:
        super().__init__()
        self.taken: list[tuple[Any, int]] = []
        self.fail = fail

    def serve_fd(self, session: Any, fd: int) -> None:
        if self.fail:
            raise RuntimeError("cannot serve")
        self.sessions.append(session)
        self.taken.append((session, fd))


def taker_factory(access: AccessState, fail: bool = False,
                  **changes: Any) -> tuple[AccessControlledFactory, DescriptorTaker]:
    changes.setdefault("log_on_failure", HOST)
    handler = DescriptorTaker(fail)
    return AccessControlledFactory(service(**changes), handler, access), handler


def take(factory: AccessControlledFactory, fd: int, addr: Any,
         local: Peer | None = None) -> Any:
    assert factory.take_connection is not None
    return factory.take_connection(fd, addr, local)


def test_take_connection_admits_and_hands_the_descriptor(
        access: AccessState, log_events: list[dict[str, Any]]) -> None:
    """An admitted peer's descriptor goes straight to the handler (TAKEN), in
    a counted session that knows both ends; a refused peer gets None and its
    FAIL line.  The factory never closes the descriptor: the port owns it."""
    factory, handler = taker_factory(access, per_source=1)
    local = Peer("127.0.0.1", 2323)
    assert take(factory, 7, ("10.0.0.1", 4000), local) is TAKEN
    ((session, fd),) = handler.taken
    assert session.peer == Peer("10.0.0.1", 4000) and session.local == local and fd == 7
    assert take(factory, 8, ("10.0.0.1", 4001)) is None  # per_source
    assert fail_lines(log_events) == ["FAIL: svc per_source_limit from=10.0.0.1"]
    session.end()
    assert take(factory, 9, ("::ffff:10.0.0.1", 4002, 0, 0)) is TAKEN
    assert handler.taken[1][0].peer == Peer("10.0.0.1", 4002)  # canonical address


def test_take_connection_except_where_the_gate_or_a_sensor_decides(
        access: AccessState, tmp_path: Path) -> None:
    """A banner to write or a sensor to trip: no take_connection, so the port
    serves every connection as tcp.Port.  Any other service decides on the
    bare descriptor."""
    (tmp_path / "b").write_text("hello\n")
    bannered, handler = taker_factory(access, banner=str(tmp_path / "b"))
    sensor, _ = taker_factory(access, flags=frozenset({"SENSOR"}))
    assert bannered.take_connection is None and sensor.take_connection is None
    assert taker_factory(access)[0].take_connection is not None
    assert factory_for(access)[0].take_connection is not None


def test_take_connection_returns_the_protocol_of_a_talking_handler(
        access: AccessState, log_events: list[dict[str, Any]]) -> None:
    """A handler without serve_fd (a builtin, a user protocol): an admitted
    peer gets the handler's protocol in a counted session, for the port to
    serve on a transport; a refused one gets None and its FAIL line."""
    factory, handler = factory_for(access, per_source=1)
    local = Peer("127.0.0.1", 7)
    protocol = take(factory, 7, ("10.0.0.1", 4000), local)
    assert protocol is handler.protocols[0]
    (session,) = handler.sessions
    assert session.peer == Peer("10.0.0.1", 4000) and session.local == local
    assert take(factory, 8, ("10.0.0.1", 4001)) is None
    assert fail_lines(log_events) == ["FAIL: svc per_source_limit from=10.0.0.1"]
    session.end()
    assert take(factory, 9, ("10.0.0.1", 4002)) is handler.protocols[1]


def test_take_connection_waits_for_names(tmp_path: Path) -> None:
    """A decision that needs a host name lookup returns a Gate holding the
    connection, never a bare hand-off."""
    lookups = Lookups()
    access = make_access(tmp_path, lookups=lookups)
    domain = AddressSpec(".example.com", AddressKind.DOMAIN, name="example.com")
    factory, handler = taker_factory(access, only_from=(domain,))
    assert isinstance(take(factory, 7, ("127.0.0.2", 1)), Gate)
    assert handler.taken == [] and len(lookups.waiting) == 1
    access.stopService()


def test_take_connection_handler_failure_releases(
        access: AccessState, log_events: list[dict[str, Any]]) -> None:
    """A handler that raises: the count is released, the error and a FAIL
    line logged, and the port is told the connection was dealt with (it
    closes the descriptor)."""
    factory, _ = taker_factory(access, fail=True, per_source=1)
    assert take(factory, 7, ("127.0.0.2", 1)) is TAKEN
    assert take(factory, 8, ("127.0.0.2", 2)) is TAKEN  # count released
    assert [e["event"] for e in log_events if e.get("event") == "handler_error"] == [
        "handler_error", "handler_error"]
    assert fail_lines(log_events) == ["FAIL: svc fork from=127.0.0.2"] * 2


class Answerer(RecordingHandler):
    """A handler that answers a bare descriptor at once (as daytime does)."""

    def __init__(self, fail: bool = False) -> None:
        super().__init__()
        self.answered: list[tuple[Peer, int, int]] = []
        self.fail = fail
        self.counter: Any = None

    def answer_fd(self, peer: Peer, fd: int) -> None:
        if self.fail:
            raise RuntimeError("cannot answer")
        self.answered.append((peer, fd, self.counter.live()))


def test_answer_fd_is_counted_but_opens_no_session(
        access: AccessState, log_events: list[dict[str, Any]]) -> None:
    """A one-shot answer: the peer is admitted and counted as accepted, the
    handler answers the descriptor with no session open (nothing live is
    counted, before, during or after); a refused peer is never answered."""
    handler = Answerer()
    handler.counter = access.counter
    answered = service(log_on_failure=HOST, only_from=specs("10.0.0.0/8"), per_source=1)
    factory = AccessControlledFactory(answered, handler, access)
    assert take(factory, 7, ("10.0.0.1", 4000)) is TAKEN
    assert take(factory, 8, ("10.0.0.1", 4001)) is TAKEN  # per_source: nothing live
    assert take(factory, 9, ("192.0.2.1", 4002)) is None
    assert handler.answered == [(Peer("10.0.0.1", 4000), 7, 0), (Peer("10.0.0.1", 4001), 8, 0)]
    assert handler.sessions == [] and access.counter.live() == 0
    assert access.counters.for_block(answered.id, answered.block_key).accepted == 2
    assert fail_lines(log_events) == ["FAIL: svc address from=192.0.2.1"]


def test_answer_fd_failure_is_logged_and_the_port_closes(
        access: AccessState, log_events: list[dict[str, Any]]) -> None:
    """A handler that raises: the error and a FAIL line are logged, and the
    port is told the connection was dealt with (it closes the descriptor)."""
    factory = AccessControlledFactory(service(log_on_failure=HOST), Answerer(fail=True), access)
    assert take(factory, 7, ("127.0.0.2", 1)) is TAKEN
    assert [e for e in log_events if e.get("event") == "handler_error"]
    assert fail_lines(log_events) == ["FAIL: svc fork from=127.0.0.2"]


def test_a_batch_decides_as_each_connection_alone(
        access: AccessState, tmp_path: Path, log_events: list[dict[str, Any]]) -> None:
    """A service answered at once is handed its connections in batches; in a
    batch (begin_batch .. end_batch, after the port accepted all of it) with
    no ban in force and empty hosts files, nothing is asked per connection;
    a ban or a hosts.deny rule in force when a batch begins refuses, with the
    same FAIL lines; a rule written during a batch (after its clients
    connected) is seen by the next one, and at once outside batches.  A
    service whose connections live on is not batched."""
    handler = Answerer()
    handler.counter = access.counter
    answered = service(log_on_failure=HOST, flags=frozenset(), per_source=1)
    factory = AccessControlledFactory(answered, handler, access)
    assert factory.batch_size == ANSWER_BATCH
    assert factory_for(access)[0].batch_size == 0
    factory.begin_batch()
    assert take(factory, 7, ("127.0.0.4", 1)) is TAKEN
    with open(tmp_path / "hosts.deny", "a") as f:
        f.write("ALL: 127.0.0.4\n")
    assert take(factory, 8, ("127.0.0.4", 2)) is TAKEN  # written during the batch
    factory.end_batch()
    assert take(factory, 9, ("127.0.0.4", 3)) is None
    factory.begin_batch()
    assert take(factory, 10, ("127.0.0.4", 4)) is None
    assert take(factory, 11, ("127.0.0.5", 5)) is TAKEN
    factory.end_batch()
    (tmp_path / "hosts.deny").write_text("")
    access.bans.ban("127.0.0.3", 10, "trap")
    factory.begin_batch()
    assert take(factory, 12, ("127.0.0.3", 6)) is None
    assert take(factory, 13, ("127.0.0.4", 7)) is TAKEN
    factory.end_batch()
    assert [fd for _, fd, _ in handler.answered] == [7, 8, 11, 13]
    assert fail_lines(log_events) == ["FAIL: svc libwrap from=127.0.0.4"] * 2 + [
        "FAIL: svc address from=127.0.0.3"]
    assert access.counters.for_block(answered.id, answered.block_key).accepted == 4


def test_a_batch_still_counts_every_connection_for_cps(
        access: AccessState, log_events: list[dict[str, Any]]) -> None:
    """cps = 3 10 on an answered service inside one batch: the rate limit is
    no batch-wide answer, so the fourth connection is refused and logged,
    and the three before it are answered."""
    clock: MemoryReactorClock = access.runtime.reactor
    clock.advance(500.1)
    handler = Answerer()
    handler.counter = access.counter
    factory = AccessControlledFactory(service(log_on_failure=HOST, cps=CPS(3, 10)),
                                      handler, access)
    factory.begin_batch()
    results = [take(factory, fd, ("127.0.0.2", fd)) for fd in range(10, 14)]
    factory.end_batch()
    assert results == [TAKEN, TAKEN, TAKEN, None]
    assert [fd for _, fd, _ in handler.answered] == [10, 11, 12]
    assert fail_lines(log_events) == ["FAIL: svc connections per second from=127.0.0.2"]
