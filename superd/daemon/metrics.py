"""
Prometheus metrics: ``--metrics ENDPOINT`` serves ``/metrics``.

Two sources, both off the per-connection path:

* state read at scrape time (a prometheus ``Collector``): connections
  accepted and refused by reason (the access layer's ``superd.observe.counters``,
  which it bumps anyway for ``superd status``), running children per
  service (the process table), active bans; services by state (running,
  failed by configuration errors, disabled, running a previous definition)
  and the configuration's error count;
* structured log events (a ``twisted.logger`` observer on the ``event``
  field): reloads and their result, relay/TLS bytes (``traffic``), ban
  additions, Redis ban-store outages -- no module had to be edited to count
  them.  The spawn latency histogram times the process table's ``spawn``.

Labels are the service id and xinetd's reason words (and small fixed sets:
direction, result, action): never a peer, so cardinality is bounded by the
configuration; event-driven series stop growing at ``MAX_SERVICES`` ids.

The HTTP side is ``superd.daemon.scrapes``: a twisted.web ``Site`` taking
bodiless ``GET``/``HEAD`` requests only, each connection within a deadline,
with a bounded number of connections that slow clients cannot all hold.
Scrapes render on the reactor thread: with a private registry that is a few
hundred lines of text.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any, Optional

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest
from prometheus_client.metrics_core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector
from twisted.application.service import Service
from twisted.internet.defer import Deferred
from twisted.logger import ILogObserver, LogEvent, Logger, LogPublisher
from twisted.web.pages import notFound
from twisted.web.resource import Resource
from twisted.web.server import Request
from zope.interface import implementer

from superd.access.state import AccessState
from superd.daemon.isolation import Isolated
from superd.daemon.scrapes import ScrapeSite
from superd.observe import events
from superd.proc.table import ProcessTable

__all__ = ["ConfigurationCollector", "EventCounter", "MetricsService", "RuntimeCollector",
           "build_registry", "metrics_site", "time_spawns"]

_log = Logger(namespace="superd.metrics")

#: A bound on distinct service ids in event-driven series.
MAX_SERVICES = 1000
#: Spawn latency buckets (seconds): posix_spawn is ~1 ms, fork of a large
#: process or an overloaded host much more.
SPAWN_BUCKETS = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0)

EV_METRICS = events.EV_METRICS


class RuntimeCollector(Collector):
    """Reads the counters, the process table and the bans at scrape time."""

    def __init__(self, access: AccessState) -> None:
        self._access = access

    def collect(self) -> Iterator[Metric]:
        accepted = CounterMetricFamily(
            "superd_connections_accepted", "Peers admitted, per service.",
            labels=["service"])
        refused = CounterMetricFamily(
            "superd_connections_refused",
            "Peers refused, per service and xinetd reason word.",
            labels=["service", "reason"])
        # Blocks sharing an id (one service on two binds) are one series.
        admitted: dict[str, int] = {}
        refusals: dict[tuple[str, str], int] = {}
        for counts in self._access.counters.all():
            sid = counts.service_id
            admitted[sid] = admitted.get(sid, 0) + counts.accepted
            for reason, count in counts.refused.items():
                refusals[sid, reason] = refusals.get((sid, reason), 0) + count
        for service_id, total in sorted(admitted.items()):
            accepted.add_metric([service_id], total)
        for (service_id, reason), total in sorted(refusals.items()):
            refused.add_metric([service_id, reason], total)
        yield accepted
        yield refused
        yield self._ended()
        yield self._children()
        yield self._bans()
        yield from self._ban_list()

    def _ended(self) -> CounterMetricFamily:
        ended = CounterMetricFamily(
            "superd_sessions_ended",
            "Live sessions superd ended itself, per service and reason (banned, reconfigured).",
            labels=["service", "reason"])
        totals: dict[tuple[str, str], int] = {}
        for counts in self._access.counters.all():
            for reason, count in counts.ended.items():
                key = (counts.service_id, reason)
                totals[key] = totals.get(key, 0) + count
        for (service_id, reason), total in sorted(totals.items()):
            ended.add_metric([service_id, reason], total)
        return ended

    def _children(self) -> GaugeMetricFamily:
        running = GaugeMetricFamily(
            "superd_children_running", "Server processes running, per service.",
            labels=["service"])
        processes = self._access.processes
        per_service: dict[str, int] = {}
        if processes is not None:
            for child in processes.children():
                per_service[child.service_id] = per_service.get(child.service_id, 0) + 1
        for service_id, count in sorted(per_service.items()):
            running.add_metric([service_id], count)
        return running

    def _bans(self) -> GaugeMetricFamily:
        return GaugeMetricFamily(
            "superd_bans_active", "Sources on the global ban list (SENSOR).",
            value=len(self._access.bans))

    def _ban_list(self) -> Iterator[Metric]:
        bans = self._access.bans
        counts = bans.counts
        evicted = CounterMetricFamily(
            "superd_ban_list_evictions", "Bans pushed out of the full ban list to make"
            " room, by kind (remote: shared by the fleet; local: this host's).",
            labels=["kind"])
        refused = CounterMetricFamily(
            "superd_ban_list_refused", "Bans not added because the list was full,"
            " by kind.", labels=["kind"])
        for kind in ("remote", "local"):
            evicted.add_metric([kind], counts[f"evicted_{kind}"])
        refused.add_metric(["remote"], counts["refused_remote"])
        refused.add_metric(["local"], counts["refused"])
        yield evicted
        yield refused
        yield GaugeMetricFamily(
            "superd_ban_database_up", "1 while the ban database is written, 0 while it"
            " is degraded (bans kept in memory only).",
            value=0 if bans.database.degraded else 1)


class ConfigurationCollector(Collector):
    """Reads what runs of the configuration at scrape time: services by
    state, the failed ones by id, and the error count."""

    def __init__(self, running: Callable[[], Isolated]) -> None:
        self._running = running

    def collect(self) -> Iterator[Metric]:
        isolated = self._running()
        config = isolated.configuration
        states = GaugeMetricFamily(
            "superd_services",
            "Service blocks by state: running (with the new or a previous definition),"
            " failed (configuration errors; not running with their written definition),"
            " disabled (switched off on purpose), previous (running a previous definition"
            " because their new block failed at a reload).", labels=["state"])
        for state, count in (("running", len(config.services)), ("failed", len(config.failed)),
                             ("disabled", len(config.disabled)),
                             ("previous", len(isolated.kept))):
            states.add_metric([state], count)
        yield states
        failed = GaugeMetricFamily(
            "superd_service_failed",
            "Failed service blocks with configuration errors, per service id.",
            labels=["service"])
        per_id: dict[str, int] = {}
        for service in config.failed:
            per_id[service.id] = per_id.get(service.id, 0) + 1
        # A garbage file may name thousands of services: bounded like the
        # event-driven series.
        for service_id, count in sorted(per_id.items())[:MAX_SERVICES]:
            failed.add_metric([service_id], count)
        yield failed
        yield GaugeMetricFamily(
            "superd_configuration_errors",
            "Errors in the configuration superd runs (0: every service block as written).",
            value=config.error_count)


class _Bounded:
    """Remembers up to MAX_SERVICES service ids; a new one past that is refused."""

    def __init__(self) -> None:
        self._seen: set[str] = set()

    def admit(self, service_id: object) -> Optional[str]:
        if not isinstance(service_id, str):
            return None
        if service_id in self._seen:
            return service_id
        if len(self._seen) >= MAX_SERVICES:
            return None
        self._seen.add(service_id)
        return service_id


@implementer(ILogObserver)
class EventCounter:
    """A log observer turning superd's structured events into metrics."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self._services = _Bounded()
        self.reloads = Counter(
            "superd_reloads", "Configuration reloads, by result (ok; partial: applied"
            " but for failed services; failed: nothing changed).",
            ["result"], registry=registry)
        self.bytes = Counter(
            "superd_relay_bytes", "Bytes relayed by redirect/TLS services"
            " that log TRAFFIC (in: client to server).",
            ["service", "direction"], registry=registry)
        self.bans = Counter(
            "superd_ban_events", "Ban list changes, by action.",
            ["action"], registry=registry)
        self.store_outages = Counter(
            "superd_ban_store_outages", "Times the shared ban store became"
            " unreachable.", registry=registry)
        self.store_dropped = Counter(
            "superd_ban_store_messages_dropped", "Messages on the shared ban channel"
            " not applied: over the budget (rate) or malformed.", ["reason"],
            registry=registry)
        self._registry = registry
        #: Made on the first ban store event: absent without --ban-store.
        self.store_up: Optional[Gauge] = None
        self._handlers: dict[str, Callable[[LogEvent], None]] = {
            events.EV_RELOAD: self._reload,
            events.EV_TRAFFIC: self._traffic,
            events.EV_BAN: self._ban,
            events.EV_BAN_STORE: self._ban_store,
        }

    def __call__(self, event: LogEvent) -> None:
        name = event.get("event")
        handler = self._handlers.get(name) if isinstance(name, str) else None
        if handler is not None:
            handler(event)

    def _reload(self, event: LogEvent) -> None:
        phase = event.get("phase")
        if phase == "done":
            result = "ok" if event.get("ok") else "partial" if event.get("partial") else "failed"
            self.reloads.labels(result).inc()
        elif phase == "crash":
            self.reloads.labels("failed").inc()

    def _traffic(self, event: LogEvent) -> None:
        service_id = self._services.admit(event.get("service_id"))
        if service_id is None:
            return
        for field, direction in (("inbound", "in"), ("outbound", "out")):
            count = event.get(field)
            if isinstance(count, int) and count > 0:
                self.bytes.labels(service_id, direction).inc(count)

    def _ban(self, event: LogEvent) -> None:
        action = event.get("action")
        if action in ("add", "extend", "full", "expire", "remote", "lift", "evict"):
            self.bans.labels(action).inc()

    def _ban_store(self, event: LogEvent) -> None:
        state = event.get("state")
        if state == "dropped":
            for reason, field in (("rate", "dropped"), ("malformed", "malformed")):
                count = event.get(field)
                if isinstance(count, int) and count > 0:
                    self.store_dropped.labels(reason).inc(count)
            return
        if state not in ("up", "down"):
            return
        if self.store_up is None:
            self.store_up = Gauge(
                "superd_ban_store_up", "1 while the shared ban store is in use,"
                " 0 while it is unreachable.", registry=self._registry)
        self.store_up.set(1 if state == "up" else 0)
        if state == "down":
            self.store_outages.inc()


def time_spawns(processes: ProcessTable, registry: CollectorRegistry,
                timer: Callable[[], float] = time.perf_counter) -> Histogram:
    """Wrap ``processes.spawn`` and ``processes.start`` to observe how long
    starting a child takes (until its pid is known)."""
    histogram = Histogram(
        "superd_spawn_seconds", "Time to start a server process, per service.",
        ["service"], buckets=SPAWN_BUCKETS, registry=registry)
    services = _Bounded()
    spawn, start = processes.spawn, processes.start

    def observe(service_id: str, since: float) -> None:
        label = services.admit(service_id)
        if label is not None:
            histogram.labels(label).observe(timer() - since)

    def timed(request: Any, service_id: str, peer: Any) -> Any:
        since = timer()
        child = spawn(request, service_id, peer)
        observe(service_id, since)
        return child

    def timed_start(request: Any, service_id: str, peer: Any,
                    started: Callable[[Any], None], failed: Callable[[Any], None]) -> None:
        since = timer()

        def known(child: Any) -> None:
            observe(service_id, since)
            started(child)

        start(request, service_id, peer, known, failed)

    # Timing the table's spawns here keeps the spawn code free of metrics.
    processes.spawn = timed  # type: ignore[method-assign]
    processes.start = timed_start  # type: ignore[method-assign]
    return histogram


def build_registry(access: AccessState, running: Optional[Callable[[], Isolated]] = None,
                   ) -> tuple[CollectorRegistry, EventCounter]:
    """A private registry with every superd metric (no process/GC defaults);
    ``running`` says what runs of the configuration."""
    registry = CollectorRegistry(auto_describe=True)
    registry.register(RuntimeCollector(access))
    if running is not None:
        registry.register(ConfigurationCollector(running))
    observer = EventCounter(registry)
    if access.processes is not None:
        time_spawns(access.processes, registry)
    return registry, observer


class MetricsResource(Resource):
    """``GET /metrics``: the registry in Prometheus text format."""

    isLeaf = True

    def __init__(self, registry: CollectorRegistry) -> None:
        super().__init__()
        self._registry = registry

    def render_GET(self, request: Request) -> bytes:
        request.setHeader(b"Content-Type", CONTENT_TYPE_LATEST.encode())
        return generate_latest(self._registry)


class _Root(Resource):
    """Everything but ``/metrics`` is 404 (escaped, unlike Resource's default)."""

    def getChild(self, path: bytes, request: Any) -> Any:
        return notFound()


def metrics_site(registry: CollectorRegistry, reactor: Any) -> ScrapeSite:
    """The HTTP factory: ``/metrics`` only, within the scrape limits."""
    root = _Root()
    root.putChild(b"metrics", MetricsResource(registry))
    return ScrapeSite(root, reactor)


class MetricsService(Service):
    """Listens on the metrics endpoint and feeds the event observer."""

    name = "metrics"

    def __init__(self, access: AccessState, description: str,
                 publisher: Optional[LogPublisher] = None, *,
                 running: Optional[Callable[[], Isolated]] = None) -> None:
        self._runtime = access.runtime
        self.description = description
        self.registry, self.observer = build_registry(access, running)
        self._publisher = publisher
        #: The listening port once bound (None before, or if it failed).
        self.listening: Any = None
        self._opened = False

    def _log_publisher(self) -> LogPublisher:
        if self._publisher is None:
            from twisted.logger import globalLogPublisher
            self._publisher = globalLogPublisher
        return self._publisher

    def privilegedStartService(self) -> None:
        super().privilegedStartService()
        self._listen()

    def startService(self) -> None:
        super().startService()
        self._log_publisher().addObserver(self.observer)
        self._listen()

    def _listen(self) -> None:
        if self._opened:
            return
        # Imported late: the endpoints module consumes LISTEN_FDS on import,
        # which superd.net.activation must read first.
        from twisted.internet.endpoints import serverFromString

        self._opened = True
        endpoint = serverFromString(self._runtime.reactor, self.description)
        d = endpoint.listen(metrics_site(self.registry, self._runtime.reactor))
        d.addCallbacks(self._listening, self._failed)

    def _listening(self, port: Any) -> None:
        self.listening = port
        host = port.getHost()
        _log.info("metrics on {where}", event=EV_METRICS, where=self.description,
                  port=getattr(host, "port", None))

    def _failed(self, failure: Any) -> None:
        _log.error("cannot serve metrics on {where}: {error}", event=EV_METRICS,
                   where=self.description, error=str(failure.value))

    def stopService(self) -> Optional[Deferred[Any]]:
        super().stopService()
        self._log_publisher().removeObserver(self.observer)
        port, self.listening = self.listening, None
        self._opened = False
        if port is None:
            return None
        stopped: Deferred[Any] = port.stopListening()
        return stopped
