"""
superd.daemon.metrics: what each metric counts, that labels stay bounded, and that
the HTTP side answers /metrics (its limits: tests/daemon/test_scrapes.py).
"""

from __future__ import annotations

from typing import Any

import attrs
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families
from twisted.internet.address import IPv4Address
from twisted.internet.testing import MemoryReactorClock, StringTransport

from superd.access.state import AccessState
from superd.core.runtime import Runtime
from superd.daemon import metrics
from superd.daemon.metrics import (
    EventCounter,
    RuntimeCollector,
    build_registry,
    metrics_site,
    time_spawns,
)


@attrs.frozen
class FakeChild:
    service_id: str


class FakeProcesses:
    def __init__(self, *service_ids: str) -> None:
        self.running = [FakeChild(s) for s in service_ids]
        self.spawned: list[str] = []

    def children(self) -> tuple[FakeChild, ...]:
        return tuple(self.running)

    def spawn(self, request: Any, service_id: str, peer: Any) -> str:
        self.spawned.append(service_id)
        return f"child of {service_id}"

    def start(self, request: Any, service_id: str, peer: Any,
              started: Any, failed: Any) -> None:
        """Started later, when the test calls the callback kept here."""
        self.spawned.append(service_id)
        self.pending = lambda: started(f"child of {service_id}")


def value(registry: CollectorRegistry, name: str, **labels: str) -> float | None:
    return registry.get_sample_value(name, labels)


def test_collector_reads_counters_children_and_bans() -> None:
    """Accepted/refused come from the counters, children from the process
    table, bans from the ban list -- read at scrape time."""
    access = AccessState(Runtime(reactor=MemoryReactorClock()),
                         processes=FakeProcesses("ssh", "ssh", "rsync"))  # type: ignore[arg-type]
    echo = access.counters.for_block("echo")
    for _ in range(3):
        echo.accept()
    echo.refuse("address")
    echo.refuse("connections per second")
    access.bans.ban("10.0.0.1", 5, "trap")
    access.bans.ban("10.0.0.2", 5, "trap")
    registry = CollectorRegistry()
    registry.register(RuntimeCollector(access))
    assert value(registry, "superd_connections_accepted_total", service="echo") == 3
    assert value(registry, "superd_connections_refused_total", service="echo",
                 reason="connections per second") == 1
    assert value(registry, "superd_children_running", service="ssh") == 2
    assert value(registry, "superd_children_running", service="rsync") == 1
    assert value(registry, "superd_bans_active") == 2


def test_blocks_sharing_an_id_are_one_series() -> None:
    """Two blocks of one id (one service on two binds) count apart for
    ``superd status``; the metrics add them up under the id."""
    access = AccessState(Runtime(reactor=MemoryReactorClock()))
    lan = access.counters.for_block("ssh", "ssh tcp/22 10.0.0.1")
    web = access.counters.for_block("ssh", "ssh tcp/22 192.0.2.1")
    lan.accept()
    web.accept()
    web.accept()
    lan.refuse("address")
    web.refuse("address")
    web.refuse("per_source_limit")
    registry = CollectorRegistry()
    registry.register(RuntimeCollector(access))
    assert value(registry, "superd_connections_accepted_total", service="ssh") == 3
    assert value(registry, "superd_connections_refused_total", service="ssh",
                 reason="address") == 2
    assert value(registry, "superd_connections_refused_total", service="ssh",
                 reason="per_source_limit") == 1


def test_reload_traffic_and_ban_events_are_counted() -> None:
    """Reload results, relayed bytes by direction and ban actions follow the events."""
    registry = CollectorRegistry()
    counter = EventCounter(registry)
    counter({"event": "reload", "phase": "start"})
    counter({"event": "reload", "phase": "done", "ok": True})
    counter({"event": "reload", "phase": "done", "ok": False})
    counter({"event": "reload", "phase": "done", "ok": False, "partial": True})
    counter({"event": "reload", "phase": "crash"})
    counter({"event": "traffic", "service_id": "web", "inbound": 10, "outbound": 2000})
    counter({"event": "ban", "action": "add", "peer_host": "10.0.0.1"})
    counter({"event": "ban", "action": "nonsense"})
    counter({"event": "ban_store", "state": "down"})
    counter({"log_format": "no event field"})
    assert value(registry, "superd_reloads_total", result="ok") == 1
    assert value(registry, "superd_reloads_total", result="failed") == 2
    assert value(registry, "superd_reloads_total", result="partial") == 1
    assert value(registry, "superd_relay_bytes_total", service="web", direction="in") == 10
    assert value(registry, "superd_relay_bytes_total", service="web", direction="out") == 2000
    assert value(registry, "superd_ban_events_total", action="add") == 1
    assert value(registry, "superd_ban_events_total", action="nonsense") is None
    assert value(registry, "superd_ban_store_outages_total") == 1
    assert value(registry, "superd_ban_store_up") == 0
    counter({"event": "ban_store", "state": "up"})
    assert value(registry, "superd_ban_store_up") == 1


def test_no_ban_store_gauge_without_a_ban_store() -> None:
    """Without ban store events there is no superd_ban_store_up series at all."""
    registry = CollectorRegistry()
    EventCounter(registry)({"event": "reload", "phase": "done", "ok": True})
    assert value(registry, "superd_ban_store_up") is None


def test_service_labels_are_bounded(monkeypatch: Any) -> None:
    """Past MAX_SERVICES distinct ids, events of new ids add no series."""
    monkeypatch.setattr(metrics, "MAX_SERVICES", 3)
    registry = CollectorRegistry()
    counter = EventCounter(registry)
    for i in range(10):
        counter({"event": "traffic", "service_id": f"s{i}", "inbound": 1, "outbound": 1})
    text = generate_latest(registry).decode()
    series = {s.labels["service"] for f in text_string_to_metric_families(text)
              for s in f.samples if "service" in s.labels}
    assert series == {"s0", "s1", "s2"}


def test_spawn_latency_is_observed_per_service() -> None:
    """The wrapped spawn still returns the child and times each call."""
    processes = FakeProcesses()
    registry = CollectorRegistry()
    ticks = iter([1.0, 1.004, 2.0, 2.5])
    time_spawns(processes, registry, timer=lambda: next(ticks))
    assert processes.spawn(None, "ssh", None) == "child of ssh"
    processes.spawn(None, "ssh", None)
    assert processes.spawned == ["ssh", "ssh"]
    assert value(registry, "superd_spawn_seconds_count", service="ssh") == 2
    assert value(registry, "superd_spawn_seconds_bucket", service="ssh", le="0.005") == 1


def test_background_spawn_latency_is_observed_when_the_pid_is_known() -> None:
    """A child started off the reactor thread is timed from the request to
    its pid, once, and still reaches the caller."""
    processes = FakeProcesses()
    registry = CollectorRegistry()
    ticks = iter([1.0, 1.3])
    time_spawns(processes, registry, timer=lambda: next(ticks))
    got: list[str] = []
    processes.start(None, "ftp", None, got.append, print)
    assert value(registry, "superd_spawn_seconds_count", service="ftp") is None
    processes.pending()
    assert got == ["child of ftp"]
    assert value(registry, "superd_spawn_seconds_count", service="ftp") == 1
    assert value(registry, "superd_spawn_seconds_bucket", service="ftp", le="0.25") == 0


def test_build_registry_without_processes() -> None:
    """Access without a process table still gets a working registry."""
    registry, _ = build_registry(AccessState(Runtime(reactor=MemoryReactorClock())))
    names = {f.name for f in registry.collect()}
    assert "superd_connections_accepted" in names
    assert "superd_spawn_seconds" not in names


def _connect(factory: Any) -> tuple[Any, StringTransport]:
    protocol = factory.buildProtocol(IPv4Address("TCP", "127.0.0.1", 5000))
    transport = StringTransport()
    protocol.makeConnection(transport)
    return protocol, transport


def test_http_get_metrics() -> None:
    """GET /metrics answers 200 with the text format; other paths 404."""
    access = AccessState(Runtime(reactor=MemoryReactorClock()))
    access.counters.for_block("echo").accept()
    registry, _ = build_registry(access)
    factory = metrics_site(registry, access.runtime.reactor)
    protocol, transport = _connect(factory)
    protocol.dataReceived(b"GET /metrics HTTP/1.0\r\nHost: x\r\n\r\n")
    reply = transport.value()
    assert reply.startswith(b"HTTP/1.0 200")
    body = reply.split(b"\r\n\r\n", 1)[1].decode()
    families = {f.name: f for f in text_string_to_metric_families(body)}
    assert families["superd_connections_accepted"].samples[0].value == 1
    protocol, transport = _connect(factory)
    protocol.dataReceived(b"GET / HTTP/1.0\r\n\r\n")
    assert transport.value().startswith(b"HTTP/1.0 404")


def test_services_by_state_failed_ids_and_errors_are_read_at_scrape_time() -> None:
    """superd_services counts running, failed, disabled and previous-definition
    services; superd_service_failed names each failed id; the error count follows
    the configuration that runs now."""
    from superd.config.errors import Problem
    from superd.config.model import (
        Configuration,
        DisabledReason,
        DisabledService,
        FailedService,
        Location,
    )
    from superd.daemon.isolation import Isolated, Kept
    from tests.builders import local_echo_service

    echo = local_echo_service()
    problem = Problem("conf/echo", 5, "echo", "wait", "bad")
    failed = (FailedService("echo", "echo", Location("conf/echo", 1), (problem,)),
              FailedService("amanda", "amanda", Location("conf/amanda", 1), (problem,)))
    now = [Isolated(Configuration(
        (echo,), failed=failed, problems=(problem, problem),
        disabled=(DisabledService("time", "time", Location("conf/time", 1),
                                  DisabledReason.DISABLE),)), (Kept(echo, failed[0]),))]
    registry, _ = build_registry(AccessState(Runtime(reactor=MemoryReactorClock())),
                                 running=lambda: now[0])
    assert [value(registry, "superd_services", state=state)
            for state in ("running", "failed", "disabled", "previous")] == [1, 2, 1, 1]
    assert value(registry, "superd_service_failed", service="amanda") == 1
    assert value(registry, "superd_configuration_errors") == 2
    now[0] = Isolated(Configuration((echo,)))
    assert value(registry, "superd_services", state="failed") == 0
    assert value(registry, "superd_service_failed", service="amanda") is None
    assert value(registry, "superd_configuration_errors") == 0
