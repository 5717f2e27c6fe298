"""Tests for superd.daemon.reload: the pure diff, and applying it to a running tree."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import attrs
from twisted.internet.address import IPv4Address
from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.error import CannotListenError
from twisted.internet.testing import MemoryReactorClock

from superd.config.errors import ConfigError, Problem
from superd.config.model import (
    Configuration,
    Extensions,
    FailedService,
    Location,
    ServiceConfig,
    SocketType,
    TLSSettings,
)
from superd.core.runtime import Runtime, RuntimeOptions
from superd.daemon.plan import plan_reload, service_key
from superd.daemon.reload import Reloader, ReloadResult
from superd.daemon.service import SuperdService, build_service
from superd.handlers.tls.sni import SNIRouter
from tests.builders import local_echo_service as service
from tests.certs import PKI
from tests.fakes import make_parts


def config(*services: ServiceConfig) -> Configuration:
    return Configuration(services=services)


UDP = dict(socket_type=SocketType.DGRAM, protocol="udp", wait=True)


# -- the plan (pure) ------------------------------------------------------------

def test_plan_sorts_services_by_identity() -> None:
    """Equal services are unchanged, same identity is changed, the rest added or dropped."""
    same, limits, gone = service(id="a"), service(id="b"), service(id="c")
    new_limits = attrs.evolve(limits, instances=5)
    added = service(id="d")
    plan = plan_reload(config(same, limits, gone), config(same, new_limits, added))
    assert plan.unchanged == ((same, same),)
    assert plan.changed == ((limits, new_limits),)
    assert (plan.added, plan.dropped) == ((added,), (gone,))
    assert plan.stopped_ids == frozenset({"c"})


def test_plan_bind_or_port_change_is_drop_plus_add_without_stopping_children() -> None:
    """A new bind or port re-binds; children of a service id still configured are kept."""
    old = service(id="ssh")
    for new in (attrs.evolve(old, bind=("127.0.0.2",)), attrs.evolve(old, port=2222),
                attrs.evolve(old, flags=frozenset({"NODELAY"}))):
        plan = plan_reload(config(old), config(new))
        assert (plan.added, plan.dropped, plan.stopped_ids) == ((new,), (old,), frozenset())


def test_plan_ignores_line_moves_but_not_other_settings() -> None:
    """Moving a block in its file is no change (lines are not compared)."""
    old = service()
    moved = attrs.evolve(old, location=old.location, lines={"port": Location("conf/echo", 9)})
    assert plan_reload(config(old), config(moved)).unchanged == ((old, moved),)
    logged = attrs.evolve(old, log_on_success=frozenset({"HOST"}))
    assert plan_reload(config(old), config(logged)).changed == ((old, logged),)


def test_plan_rebuilds_udp_builtins_when_protected_ports_change() -> None:
    """UDP builtins never answer other UDP builtins' ports: a new one changes them all."""
    echo = service(**UDP, port=7)
    daytime = service(**UDP, name="daytime", id="daytime", port=13)
    plan = plan_reload(config(echo), config(echo, daytime))
    assert plan.changed == ((echo, echo),)
    assert plan.added == (daytime,)


def test_plan_rebuilds_tcpmux_when_its_clients_change() -> None:
    """The tcpmux server's table of services is rebuilt when a tcpmux client changes."""
    mux = service(name="tcpmux", id="tcpmux", port=1)
    client = service(name="finger", id="finger", port=None, type=frozenset({"TCPMUX"}),
                     server="/bin/cat")
    plan = plan_reload(config(mux, client), config(mux, attrs.evolve(client, server="/bin/ls")))
    assert [new.id for _, new in plan.changed] == ["tcpmux", "finger"]
    assert plan_reload(config(mux, client), config(mux, client)).changed == ()


def test_service_key_names_every_identity_attribute() -> None:
    """The identity is xinetd's (id, type, wait, protocol, socket type, port) plus bind."""
    base = service()
    for change in (dict(id="x"), dict(name="x"), dict(wait=True), dict(protocol="udp"),
                   dict(port=1), dict(bind=("::1",)), dict(v6only=True),
                   dict(flags=frozenset({"IPv4"})), dict(flags=frozenset({"SENSOR"}))):
        assert service_key(attrs.evolve(base, **change)) != service_key(base), change
    assert service_key(attrs.evolve(base, instances=3, only_from=())) == service_key(base)


# -- applying it ----------------------------------------------------------------

class FakePort:
    def __init__(self, port: int, factory: Any) -> None:
        self.port, self.factory, self.stopped = port, factory, False

    def getHost(self) -> IPv4Address:
        return IPv4Address("TCP", "127.0.0.1", self.port)

    def stopListening(self) -> None:
        self.stopped = True


class Reactor(MemoryReactorClock):
    """Listens on fake ports; ``taken`` ports cannot be bound."""

    def __init__(self) -> None:
        super().__init__()
        self.taken: set[int] = set()
        self.ports: list[FakePort] = []

    def listenTCP(self, port: int, factory: Any, backlog: int = 50,
                  interface: str = "") -> FakePort:
        if port in self.taken:
            raise CannotListenError(interface, port, OSError(98, "Address already in use"))
        self.ports.append(FakePort(port, factory))
        return self.ports[-1]

    def listenUDP(self, port: int, protocol: Any, interface: str = "",
                  maxPacketSize: int = 8192) -> FakePort:
        udp = FakePort(port, None)
        udp.protocol = protocol  # type: ignore[attr-defined]
        protocol.makeConnection(udp)  # as udp.Port.startListening does
        self.ports.append(udp)
        return udp


class Processes:
    def __init__(self) -> None:
        self.stopped: list[tuple[str, float]] = []

    def stop_service(self, service_id: str, grace: float) -> Deferred[None]:
        self.stopped.append((service_id, grace))
        return succeed(None)

    def stop_all(self, grace: float) -> Deferred[None]:
        return succeed(None)


class Router:
    def __init__(self) -> None:
        self.calls: list[Any] = []
        self.router = self

    def update(self, configuration: Configuration) -> None:
        self.calls.append(("update", configuration))

    def reopen(self) -> None:
        self.calls.append("reopen")

    def startService(self) -> None:
        pass

    def stopService(self) -> None:
        pass


def running(*services: ServiceConfig) -> tuple[SuperdService, Reactor]:
    reactor = Reactor()
    runtime = Runtime(reactor=reactor, options=RuntimeOptions(grace=3.0))
    parts = make_parts(runtime, processes=Processes())
    top = build_service(config(*services), parts, install_signal=lambda *a: None)
    top.service_log = Router()
    top.privilegedStartService()
    top.startService()
    return top, reactor


def reload(top: SuperdService, new: Any, notes: list[str] | None = None) -> ReloadResult:
    load = (lambda: succeed(new)) if isinstance(new, Configuration) else (lambda: fail(new))
    reloader = Reloader(top, load, notify=(notes if notes is not None else []).append)
    results: list[ReloadResult] = []
    reloader.reload().addCallback(results.append)
    (result,) = results
    assert reloader.last is result
    return result


def ports_of(top: SuperdService) -> dict[str, Any]:
    return {config_.id: [getattr(child, "port", None) for child in children]
            for config_, children in top.groups}


def test_changed_service_keeps_its_port_and_gets_a_new_factory() -> None:
    """Same identity, new limits: the bound port stays; its factory is the new one."""
    old = service(instances=5)
    top, reactor = running(old)
    (port,) = reactor.ports
    before = port.factory
    new = attrs.evolve(old, instances=9)
    result = reload(top, config(new))
    assert (result.ok, result.old, result.changed, result.new, result.dropped) == \
        (True, 1, 1, 0, 0)
    assert reactor.ports == [port] and not port.stopped
    assert port.factory is not before and port.factory.service is new
    assert ports_of(top) == {"echo": [port]}
    assert top.configuration == config(new)


def test_unchanged_service_is_not_touched() -> None:
    """An equal service keeps its listener object, port and factory."""
    top, reactor = running(service())
    (child,) = list(top.listeners)
    factory = reactor.ports[0].factory
    assert reload(top, config(service())).ok
    assert list(top.listeners) == [child] and reactor.ports[0].factory is factory


def test_added_and_dropped_services() -> None:
    """New services listen; dropped ones stop listening and their children stop."""
    top, reactor = running(service(id="old", port=1))
    (old_port,) = reactor.ports
    result = reload(top, config(service(id="new", port=2)))
    assert (result.new, result.dropped) == (1, 1)
    assert old_port.stopped
    assert [p.port for p in reactor.ports] == [1, 2] and not reactor.ports[1].stopped
    assert top.parts.processes.stopped == [("old", 3.0)]
    assert list(ports_of(top)) == ["new"]


def test_a_taken_port_fails_the_whole_reload_and_undoes_new_binds() -> None:
    """One port taken: nothing changes, and the socket bound before it is closed again."""
    old = service(id="old", port=1)
    top, reactor = running(old)
    reactor.taken.add(3)
    result = reload(top, config(service(id="first", port=2), service(id="taken", port=3)))
    assert not result.ok
    assert "service taken: cannot listen on tcp 127.0.0.1:3" in result.errors[0]
    old_port, first = reactor.ports
    assert first.stopped and not old_port.stopped
    assert top.configuration == config(old)
    assert top.parts.processes.stopped == []


def test_a_port_held_by_a_dropped_service_is_freed_first() -> None:
    """Moving a fixed port to another address closes the old socket before binding."""
    top, reactor = running(service(port=7))
    moved = service(port=7, bind=("127.0.0.2",))
    original_listen = reactor.listenTCP

    def listen(port: int, factory: Any, backlog: int = 50, interface: str = "") -> FakePort:
        if reactor.ports and not reactor.ports[0].stopped:
            raise CannotListenError(interface, port, OSError(98, "in use"))
        return original_listen(port, factory, backlog, interface)

    reactor.listenTCP = listen  # type: ignore[method-assign]
    assert reload(top, config(moved)).ok
    assert [p.stopped for p in reactor.ports] == [True, False]


def test_configuration_errors_keep_everything_and_still_reopen_logs(
        log_events: list[dict[str, Any]]) -> None:
    """A load error changes nothing, logs each problem with file and line, reopens logs."""
    top, reactor = running(service())
    problems = [Problem("conf/a", 3, "x", "port", "bad port"), Problem("conf/b", 9, None, None,
                                                                     "junk")]
    notes: list[str] = []
    result = reload(top, ConfigError(problems), notes)
    assert not result.ok
    assert result.errors == ("conf/a:3: service x: port: bad port", "conf/b:9: junk")
    logged = [e["problem"] for e in log_events if e.get("event") == "config_error"]
    assert logged == list(result.errors)
    assert top.service_log.calls == ["reopen"]  # type: ignore[union-attr]
    assert notes == ["reloading", "ready"]
    assert not reactor.ports[0].stopped


def test_success_updates_then_reopens_service_logs(log_events: list[dict[str, Any]]) -> None:
    """The service-log router switches to the new configuration, then reopens."""
    top, _ = running(service())
    new = config(service(), service(id="two", port=2))
    assert reload(top, new).ok
    assert top.service_log.calls == [("update", new), "reopen"]  # type: ignore[union-attr]
    (done,) = [e for e in log_events if e.get("phase") == "done"]
    assert (done["new"], done["old"], done["dropped"]) == (1, 1, 0)
    assert done["log_format"].startswith("Reconfigured: new={new} old={old}")


def slow_loads() -> tuple[list[Deferred[Configuration]], Callable[[], Deferred[Configuration]]]:
    """A load function whose configurations arrive when the test fires the
    Deferreds it appends to the returned list."""
    pending: list[Deferred[Configuration]] = []

    def load() -> Deferred[Configuration]:
        pending.append(Deferred())
        return pending[-1]

    return pending, load


def test_signals_during_a_reload_collapse_into_one_more() -> None:
    """Two SIGHUPs during a slow load give exactly one more reload afterwards."""
    top, _ = running(service())
    pending, load = slow_loads()
    reloader = Reloader(top, load)
    first = reloader.reload()
    reloader.reload()
    reloader.reload()
    assert reloader.busy and len(pending) == 1
    pending[0].callback(config(service()))
    assert len(pending) == 2 and reloader.busy
    pending[1].callback(config(service(instances=2)))
    assert not reloader.busy
    result: list[ReloadResult] = []
    first.addCallback(result.append)
    assert result[0].changed == 1


def test_reload_that_finishes_loading_after_stop_changes_nothing() -> None:
    """A reload whose files arrive after superd began stopping binds nothing."""
    top, reactor = running(service(id="old", port=1))
    pending: Deferred[Configuration] = Deferred()
    reloader = Reloader(top, lambda: pending)
    reloader.reload()
    top.stopService()
    pending.callback(config(service(id="new", port=2)))
    assert reloader.last is not None and not reloader.last.ok
    assert reloader.last.errors == ("superd is stopping; reload abandoned",)
    assert [p.port for p in reactor.ports] == [1]


def test_udp_builtin_changed_moves_its_port_to_a_new_protocol() -> None:
    """A changed UDP builtin keeps its port; the port now delivers to the new protocol."""
    old = service(**UDP, port=7)
    top, reactor = running(old)
    (port,) = reactor.ports
    (old_listener,) = list(top.listeners)
    old_protocol = old_listener.target  # type: ignore[attr-defined]
    new = attrs.evolve(old, only_from=())
    assert reload(top, config(new)).changed == 1
    (listener,) = list(top.listeners)
    assert listener.port is port  # type: ignore[attr-defined]
    assert port.protocol is listener.target is not old_protocol  # type: ignore[attr-defined]
    assert listener.target.transport is port and old_protocol.transport is None  # type: ignore


def test_every_caller_gets_the_result_unchanged() -> None:
    """Callers waiting on one reload each get the ReloadResult, whatever the others do."""
    top, _ = running(service())
    pending, load = slow_loads()
    reloader = Reloader(top, load)
    first, second = reloader.reload(), reloader.reload()
    first.addCallback(lambda result: "changed by the first caller")
    seen: list[Any] = []
    second.addCallback(seen.append)
    pending[0].callback(config(service()))
    assert seen == []  # the second call asked for a run that reads the files again
    pending[1].callback(config(service(instances=4)))
    assert [type(r) for r in seen] == [ReloadResult] and seen[0].changed == 1


def test_unexpected_bind_exception_undoes_binds(log_events: list[dict[str, Any]]) -> None:
    """A bug while binding (not a BindError) still closes this reload's sockets."""
    top, reactor = running(service(id="old", port=1))
    original_listen = reactor.listenTCP

    def listen(port: int, factory: Any, backlog: int = 50, interface: str = "") -> FakePort:
        if port == 3:
            raise RuntimeError("bug")
        return original_listen(port, factory, backlog, interface)

    reactor.listenTCP = listen  # type: ignore[method-assign]
    result = reload(top, config(service(id="old", port=1), service(id="a", port=2),
                                service(id="b", port=3)))
    assert not result.ok and "internal error" in result.errors[0]
    assert [(p.port, p.stopped) for p in reactor.ports] == [(1, False), (2, True)]
    assert [g[0].id for g in top.groups] == ["old"]


def test_a_changed_ban_store_is_kept_and_a_restart_is_asked_for() -> None:
    """A new ban_store reloads the rest, warns once (password hidden) and needs a restart."""
    from twisted.logger import capturedLogs

    from superd.daemon.reload import warn_ban_store_change

    echo = service()
    top, _ = running(echo)
    new = attrs.evolve(config(echo), ban_store="redis://:pw@127.0.0.1:6390/3")
    with capturedLogs() as events:
        assert reload(top, new).ok
        assert reload(top, new).ok  # unchanged now: no second warning
    (warning,) = [e for e in events if e.get("attribute") == "ban_store"]
    assert warning["event"] == "config_warning"
    assert (warning["old"], warning["new"]) == ("none", "redis://127.0.0.1:6390/3")
    assert "pw" not in repr(warning)
    assert not warn_ban_store_change(new, attrs.evolve(new))


def test_heap_is_settled_at_startup_and_after_a_good_reload_only() -> None:
    """superd.daemon.heap.settle runs once the daemon is ready and after each
    reload that took effect; a refused configuration changes nothing."""
    settled: list[int] = []
    reactor = Reactor()
    runtime = Runtime(reactor=reactor, options=RuntimeOptions(grace=3.0))
    parts = make_parts(runtime, processes=Processes())
    old = service(instances=5)
    top = build_service(config(old), parts, install_signal=lambda *a: None,
                        settle_heap=lambda: settled.append(1))
    top.service_log = Router()
    top.privilegedStartService()
    top.startService()
    top._announce_ready()  # what callWhenRunning runs
    assert settled == [1]
    assert reload(top, config(attrs.evolve(old, instances=9))).ok
    assert settled == [1, 1]
    assert not reload(top, ConfigError([Problem("conf/a", 3, "x", "port", "bad port")])).ok
    assert settled == [1, 1]


def test_a_reload_ends_the_sessions_its_new_rules_refuse(
        log_events: list[dict[str, Any]]) -> None:
    """After a reload that took effect, a live session whose source the new
    address lists refuse is ended (EXIT says ``reconfigured``), the others
    go on; a reload that failed ends nothing."""
    from tests.access.helpers import serve, specs

    old = service()
    top, reactor = running(old)
    (port,) = reactor.ports
    barred, kept = serve(port.factory, "10.0.0.1"), serve(port.factory, "10.0.0.2")
    refused = attrs.evolve(old, no_access=specs("10.0.0.1"))
    assert not reload(top, ConfigError([Problem("conf/echo", 1, "echo", None, "bad")])).ok
    assert not barred.aborted
    assert reload(top, config(refused)).ok
    assert barred.aborted and not kept.aborted
    exits = [e for e in log_events if e.get("event") == "exit"]
    assert [(e["service_id"], e["reason"]) for e in exits] == [("echo", "reconfigured")]
    counts = top.access.counters.for_block("echo", old.block_key)
    assert counts.ended == {"reconfigured": 1}


def test_ban_ends_sessions_follows_the_configuration() -> None:
    """``ban_ends_sessions`` of the running configuration decides, at start
    and after each reload."""
    top, _ = running(service())
    assert top.access.ban_ends_sessions is True
    assert reload(top, attrs.evolve(config(service()), ban_ends_sessions=False)).ok
    assert top.access.ban_ends_sessions is False


# -- isolation: a broken block keeps its previous definition -----------------------

def isolated_reload(top: SuperdService, new: Configuration, *,
                    strict: bool = False) -> ReloadResult:
    reloader = Reloader(top, lambda: succeed(new), strict=strict)
    results: list[ReloadResult] = []
    reloader.reload().addCallback(results.append)
    (result,) = results
    return result


def broken(old: ServiceConfig) -> FailedService:
    """The failed new block of ``old`` (at the same place)."""
    problem = Problem(old.location.file, old.location.line + 4, old.name, "wait",
                      "expected yes or no, got 'perhaps'")
    return FailedService(old.name, old.id, old.location, (problem,))


def with_failures(*services: ServiceConfig, failed: tuple[FailedService, ...],
                  **values: Any) -> Configuration:
    return Configuration(services, failed=failed,
                         problems=tuple(p for f in failed for p in f.problems), **values)


def three() -> tuple[ServiceConfig, ServiceConfig, ServiceConfig]:
    return (service(id="same", port=1, location=Location("conf/same", 1)),
            service(id="broken", port=2, location=Location("conf/broken", 1)),
            service(id="changed", port=3, location=Location("conf/changed", 1)))


def test_a_broken_block_keeps_its_previous_definition_and_the_rest_applies(
        log_events: list[dict[str, Any]]) -> None:
    """The service whose new block failed keeps its socket and factory (its
    previous definition); a changed service takes its new settings; an added
    one listens; the result says what failed and what was kept, and why."""
    same, old, changed = three()
    top, reactor = running(same, old, changed)
    factories = {p.port: p.factory for p in reactor.ports}
    added = service(id="added", port=4, location=Location("conf/added", 1))
    new_changed = attrs.evolve(changed, instances=7)
    new = with_failures(same, new_changed, added, failed=(broken(old),),
                        sources=("conf/same", "conf/broken", "conf/changed", "conf/added"))
    result = isolated_reload(top, new)
    assert (result.ok, result.partial, result.applied) == (False, True, True)
    assert (result.new, result.old, result.changed, result.dropped) == (1, 3, 1, 0)
    assert result.errors == ("conf/broken:5: service echo: wait: expected yes or no,"
                             " got 'perhaps'",)
    ports = {p.port: p for p in reactor.ports}
    assert not any(p.stopped for p in reactor.ports) and sorted(ports) == [1, 2, 3, 4]
    assert ports[2].factory is factories[2] and ports[2].factory.service is old
    assert ports[3].factory.service is new_changed
    assert [s.id for s, _ in top.groups] == ["same", "broken", "changed", "added"]
    assert result.isolated is not None and top.kept == result.isolated.kept
    assert [k.service for k in top.kept] == [old]
    assert top.configuration.failed == (broken(old),)
    assert top.parts.processes.stopped == []
    document = result.as_dict()
    assert document["partial"] is True and document["ok"] is False
    assert [(f["id"], f["state"], f["previous"]) for f in document["failed"]] == [
        ("broken", "failed at reload", ["conf/broken:1"])]
    assert document["kept"][0]["reason"] == "its new block (conf/broken:1) has 1 error"
    (failed_event,) = [e for e in log_events if e.get("event") == "service_failed"]
    assert failed_event["previous"] == ["conf/broken:1"] and failed_event["phase"] == "reload"
    assert failed_event["problems"] == list(result.errors)
    assert [e["problem"] for e in log_events if e.get("event") == "config_error"] == \
        list(result.errors)
    (done,) = [e for e in log_events if e.get("phase") == "done"]
    assert (done["ok"], done["partial"], done["failed"], done["kept"]) == (False, True, 1, 1)


def test_a_fixed_block_replaces_the_kept_definition() -> None:
    """Once the block is repaired, the next reload applies it and nothing
    is kept any more."""
    same, old, changed = three()
    top, reactor = running(same, old, changed)
    assert isolated_reload(top, with_failures(same, changed, failed=(broken(old),))).partial
    fixed = attrs.evolve(old, instances=2)
    result = isolated_reload(top, Configuration((same, fixed, changed)))
    assert result.ok and result.changed == 1 and top.kept == ()
    assert {p.port: p.factory.service for p in reactor.ports}[2] is fixed


def test_strict_keeps_the_whole_running_configuration() -> None:
    """--strict (or all_or_nothing = yes in the new files): one broken block
    keeps everything as it runs, as before isolation."""
    for strict, values in ((True, {}), (False, {"all_or_nothing": True})):
        same, old, changed = three()
        top, reactor = running(same, old, changed)
        factories = [p.factory for p in reactor.ports]
        added = service(id="added", port=4, location=Location("conf/added", 1))
        new = with_failures(same, attrs.evolve(changed, instances=7), added,
                            failed=(broken(old),), **values)
        result = isolated_reload(top, new, strict=strict)
        assert (result.ok, result.partial, result.applied) == (False, False, False)
        assert result.errors == ("conf/broken:5: service echo: wait: expected yes or no,"
                                 " got 'perhaps'",)
        assert [p.factory for p in reactor.ports] == factories  # nothing bound, nothing moved
        assert top.configuration == config(same, old, changed)


def test_a_new_definition_that_cannot_be_built_keeps_the_previous_one() -> None:
    """A handler that cannot be built fails its service like a broken block:
    a running one keeps its previous definition, an added one does not run,
    and the rest of the reload applies."""
    same, old, changed = three()
    top, reactor = running(same, old, changed)
    unbuildable = dict(wait=True, extensions=Extensions(factory="x:y"))
    new_old = attrs.evolve(old, **unbuildable, lines={"factory": Location("conf/broken", 6)})
    added = service(id="added", port=4, location=Location("conf/added", 1), **unbuildable)
    new_changed = attrs.evolve(changed, instances=7)
    result = isolated_reload(top, Configuration(
        (same, new_old, new_changed, added),
        sources=("conf/same", "conf/broken", "conf/changed", "conf/added")))
    assert result.partial
    assert result.errors == (
        "conf/broken:6: service echo: factory: user protocols are stream services with"
        " wait = no",
        "conf/added:1: service echo: factory: user protocols are stream services with"
        " wait = no")
    assert [k.service for k in top.kept] == [old]
    assert [s.id for s, _ in top.groups] == ["same", "broken", "changed"]
    assert {p.port: p.factory.service for p in reactor.ports if not p.stopped} == {
        1: same, 2: old, 3: new_changed}
    assert [f.id for f in top.configuration.failed] == ["broken", "added"]


def test_a_new_definition_that_cannot_be_built_refuses_all_under_strict() -> None:
    """Under --strict a handler that cannot be built keeps everything, as before."""
    same, old, changed = three()
    top, reactor = running(same, old, changed)
    new_old = attrs.evolve(old, wait=True, extensions=Extensions(factory="x:y"))
    result = isolated_reload(top, Configuration((same, new_old, changed)), strict=True)
    assert not result.applied
    assert top.configuration == config(same, old, changed) and top.kept == ()


# -- TLS services sharing a socket (tls_sni) ----------------------------------

def tls_service(pki: PKI, service_id: str, *sni: str, **changes: Any) -> ServiceConfig:
    settings = TLSSettings(cert_pem=pki.server.cert_pem, key_pem=pki.server.key_pem, sni=sni)
    return service(id=service_id, port=443, extensions=Extensions(tls=settings), **changes)


def routed(port: FakePort) -> Any:
    """What the router serving ``port`` sends each name to (service ids)."""
    router = port.factory
    assert isinstance(router, SNIRouter)
    members = {name: router.lookup(name) for name in ("a.example", "b.example", "c.example")}
    return {name: None if m is None else m.factory.service.id for name, m in members.items()}


def test_tls_services_share_one_socket_across_reloads(pki: PKI) -> None:
    """Routed services bind one socket; adding c and dropping b keeps it, re-routed."""
    top, reactor = running(tls_service(pki, "a", "a.example"),
                           tls_service(pki, "b", "b.example"))
    (port,) = reactor.ports
    assert routed(port) == {"a.example": "a", "b.example": "b", "c.example": None}
    result = reload(top, config(tls_service(pki, "a", "a.example"),
                                tls_service(pki, "c", "c.example")))
    assert (result.ok, result.new, result.dropped) == (True, 1, 1)
    assert reactor.ports == [port] and not port.stopped
    assert routed(port) == {"a.example": "a", "b.example": None, "c.example": "c"}
    changed = tls_service(pki, "a", "a.example", instances=3)
    assert reload(top, config(changed, tls_service(pki, "c", "c.example"))).ok
    assert routed(port)["a.example"] == "a" and port.factory.lookup(  # type: ignore[union-attr]
        "a.example").factory.service is changed
    assert reload(top, config(tls_service(pki, "c"))).ok  # alone, no names
    assert reactor.ports == [port] and port.factory.service.id == "c"


def test_turning_tls_on_and_off_keeps_the_socket(pki: PKI) -> None:
    """A service that starts or stops using TLS by reload keeps its bound socket."""
    plain = service(id="a", port=443)
    top, reactor = running(plain)
    (port,) = reactor.ports
    assert reload(top, config(tls_service(pki, "a"))).ok
    assert reactor.ports == [port] and port.factory.handler.__class__.__name__ == "TLSHandler"
    assert reload(top, config(plain)).ok
    assert reactor.ports == [port] and not port.stopped
    assert port.factory.service == plain
