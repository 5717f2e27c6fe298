"""
The daemon as a tree of Twisted services.

``build_service`` turns a loaded ``Configuration`` and the daemon's ``Parts``
into a ``SuperdService``.  Its children start in this order and stop in the
reverse one, each stop waiting for the previous to finish:

1. ``servicelog`` -- the xinetd-format service logs: up before anything can
   be logged, and closed last, so the EXIT lines of children reaped while
   stopping still land;
2. ``access`` -- bans, the hosts watch, the rate-limited FAIL logs;
3. ``sessions`` -- nothing at start; at stop it waits (up to ``--grace``)
   for sessions served in-process and stops every child (SIGTERM, SIGKILL
   after ``--grace``);
4. ``listeners`` -- one ``Listener`` per service per address (and the
   ``wait = yes`` services), bound in ``privilegedStartService``, before
   twistd could drop privileges;
5. what the tap adds after them: ``operations`` (SIGHUP reload, SIGUSR1
   status, the control socket), ``metrics``, the shared ban store.

A socket that cannot be bound stops startup with a message naming the
service, the address and the configuration line.
"""

from __future__ import annotations

import os
import signal
from collections.abc import Callable, Mapping
from typing import Any, List, NoReturn, Optional, Protocol, Tuple

from twisted.application.service import MultiService, Service
from twisted.internet.defer import Deferred, gatherResults, maybeDeferred, succeed
from twisted.internet.error import ReactorNotRunning
from twisted.logger import Logger

from superd.access.state import AccessState
from superd.config.errors import ConfigError
from superd.config.model import Configuration
from superd.core.runtime import Runtime
from superd.daemon import notify
from superd.daemon.assembly import SUPERD_BUILDERS, Assembly, Builders, Group
from superd.daemon.findings import log_start
from superd.daemon.isolation import Isolated, Kept, without
from superd.daemon.parts import Parts
from superd.net.listener import IListener, Listener
from superd.net.sockets import BindError
from superd.observe import events
from superd.observe.servicelog import ServiceLogRouter, ServiceLogService

__all__ = ["Listener", "OrderedMultiService", "Sessions", "SuperdService", "build_groups",
           "build_service"]

_log = Logger(namespace="superd.service")


class OrderedMultiService(MultiService):
    """
    A ``MultiService`` that stops its children one at a time, the last
    started first, each after the previous one's stop has finished
    (Twisted's own stops them all at once).
    """

    def stopService(self) -> Deferred[None]:
        Service.stopService(self)  # type: ignore[no-untyped-call]
        return Deferred.fromCoroutine(self._stop_in_order())

    async def _stop_in_order(self) -> None:
        for child in reversed(list(self)):
            try:
                await maybeDeferred(child.stopService)
            except Exception:
                _log.failure("stopping {child} failed", event=events.EV_STOPPING,
                             child=getattr(child, "name", None) or repr(child))


class Sessions(Service):
    """
    At stop (once the listeners are closed): waits up to ``--grace`` for the
    sessions served in-process and stops every child, so that a restart
    (socket activation: the next superd accepts on the same socket) cuts no
    exchange short; the reactor closes what is left.
    """

    name = "sessions"

    def __init__(self, parts: Parts) -> None:
        self._parts = parts

    def stopService(self) -> Deferred[None]:
        super().stopService()  # type: ignore[no-untyped-call]
        grace = self._parts.runtime.options.grace
        waits = [self._drain(grace), self._parts.processes.stop_all(grace)]
        return gatherResults(waits, consumeErrors=True).addCallback(lambda _: None)

    def _drain(self, grace: float) -> Deferred[None]:
        counter = self._parts.access.counter
        live = counter.live()
        if live == 0:
            return succeed(None)
        _log.info("waiting up to {grace} s for {count} sessions to end",
                  event=events.EV_DRAINING, count=live, grace=grace)

        def timed_out(result: object, timeout: float) -> None:
            _log.info("closing {count} sessions still open after {grace} s",
                      event=events.EV_DRAIN_TIMEOUT, count=counter.live(), grace=grace)

        idle: Deferred[None] = counter.when_idle()
        idle.addTimeout(grace, self._parts.runtime.reactor, onTimeoutCancel=timed_out)
        return idle


class Reloads(Protocol):
    """What SIGHUP asks of the daemon's operations (superd.daemon.operations)."""

    def reload(self) -> object:
        """Reload the configuration."""


def _first_only(handler: Callable[[int, Any], Any]) -> Callable[[int, Any], None]:
    """A signal handler that passes the first signal to ``handler`` and logs the rest."""
    seen: List[int] = []

    def once(signum: int, frame: Any) -> None:
        if seen:
            _log.info("signal {signum} again: already stopping", event=events.EV_STOPPING,
                      signum=signum)
            return
        seen.append(signum)
        handler(signum, frame)

    return once


def _raise(error: BindError) -> NoReturn:
    raise error


class SuperdService(OrderedMultiService):
    """
    The whole daemon: its parts, every listener, the SIGHUP guard and the
    orderly stop.

    ``on_bind_error`` decides what a failed bind does (the tap prints it and
    exits non-zero); ``install_signal`` is ``signal.signal`` outside tests.
    """

    def __init__(self, parts: Parts, configuration: Configuration,
                 service_log: ServiceLogService, *,
                 on_bind_error: Callable[[BindError], NoReturn] = _raise,
                 install_signal: Callable[..., Any] = signal.signal,
                 environ: Mapping[str, str] = os.environ,
                 settle_heap: Callable[[], object] = lambda: None,
                 builders: Builders = SUPERD_BUILDERS) -> None:
        super().__init__()
        self.parts = parts
        #: Freezes the long-lived heap once it is built, at startup and after
        #: each successful reload (``superd.daemon.heap.settle`` in the daemon;
        #: unit tests keep the no-op: a full collection per start is slow there).
        self.settle_heap = settle_heap
        #: What reloads build new children with.
        self.builders = builders
        self._on_bind_error = on_bind_error
        self._install_signal = install_signal
        self._environ = environ
        self._old_hup: Any = None
        #: What is running (a reload replaces it): the services of ``groups``,
        #: and the failed and disabled ones.
        self.configuration = configuration
        #: The services a reload left running with their previous definition
        #: because their new block (or file) failed.
        self.kept: Tuple[Kept, ...] = ()
        self._findings_logged = False
        #: Each configured service with its children (sockets), in order:
        #: what a reload compares and moves (superd.daemon.reload).
        self.groups: List[Group] = []
        self.service_log = service_log
        self.listeners = parts.listeners
        for child in (service_log, parts.access, Sessions(parts), self.listeners):
            child.setServiceParent(self)
        #: Set by the tap (superd.daemon.operations): SIGHUP reloads through it.
        self.operations: Optional[Reloads] = None

    @property
    def runtime(self) -> Runtime:
        """The reactor and the command-line settings."""
        return self.parts.runtime

    @property
    def access(self) -> AccessState:
        """The access state (bans, live sessions, counters)."""
        return self.parts.access

    @property
    def isolated(self) -> Isolated:
        """What runs, and which services run their previous definition."""
        return Isolated(self.configuration, self.kept)

    def add_listeners(self, children: List[IListener]) -> None:
        """Serve ``children`` (listeners or wait = yes services) from now on."""
        for child in children:
            child.setServiceParent(self.listeners)

    def remove_listener(self, child: IListener) -> None:
        """Stop serving ``child``; its socket is its own business (closed or moved)."""
        self.listeners.removeService(child)

    def _guarded(self, start: Callable[[], None]) -> None:
        try:
            start()
        except BindError as e:
            _log.critical("{error}", event=events.EV_BIND_FAILED, error=str(e),
                          service_id=e.address.service_id, host=e.address.host,
                          port=e.address.port, protocol=e.address.protocol)
            self._close_listeners()
            self._on_bind_error(e)

    def _close_listeners(self) -> None:
        for listener in self.listeners.listeners():
            listener.close()

    def privilegedStartService(self) -> None:
        self._log_findings()
        self._guarded(super().privilegedStartService)

    def _log_findings(self) -> None:
        # Once, before the first socket: what the configuration says is wrong
        # or switched off comes before what listens.
        if not self._findings_logged:
            self._findings_logged = True
            log_start(self.configuration)

    def startService(self) -> None:
        self._log_findings()
        self._guarded(super().startService)
        self._old_hup = self._install_signal(signal.SIGHUP, self._on_sighup)
        self.runtime.reactor.callWhenRunning(self._announce_ready)

    def _on_sighup(self, signum: int, frame: object) -> None:
        # Signal handlers run between bytecodes: hop into the reactor.
        self.runtime.reactor.callFromThread(self.reload)

    def reload(self) -> None:
        """SIGHUP: reload (superd.daemon.operations).  Without operations (unit
        tests) the service log files are still reopened, for logrotate."""
        if self.operations is not None:
            self.operations.reload()
            return
        self.service_log.router.reopen()

    def _guard_stop_signals(self) -> None:
        # SIGTERM is the ordinary way to stop a daemon, so it exits 0: the
        # reactor's own handler would make twistd re-raise it (status 143).
        # Supervisors and `timeout` may signal the whole process group, so a
        # second signal can arrive while stopping; only the first one stops
        # (Twisted would call reactor.stop() twice and log a critical
        # ReactorNotRunning).  The reactor installed its handlers before
        # running this (after startup); SIGINT keeps its conventional status.
        self._install_signal(signal.SIGTERM, _first_only(self._on_sigterm))
        previous = signal.getsignal(signal.SIGINT)
        if callable(previous):
            self._install_signal(signal.SIGINT, _first_only(previous))

    def _on_sigterm(self, signum: int, frame: object) -> None:
        # Signal handlers run between bytecodes: hop into the reactor.
        self.runtime.reactor.callFromThread(self._stop_reactor)

    def _stop_reactor(self) -> None:
        try:
            self.runtime.reactor.stop()
        except ReactorNotRunning:
            pass  # already stopping for another reason (a control command)

    def socket_count(self) -> int:
        """The services' sockets: Listeners and wait=yes services, one per address."""
        return sum(len(children) for _, children in self.groups)

    def _announce_ready(self) -> None:
        self._guard_stop_signals()
        self.settle_heap()
        failed = len(self.configuration.failed)
        _log.info("superd ready: {count} sockets listening" + (
                  "; {failed} services failed (superd status lists them)" if failed else ""),
                  event=events.EV_READY, count=self.socket_count(),
                  services=len(self.configuration.services), failed=failed,
                  disabled=len(self.configuration.disabled))
        notify.ready(self._environ, f"serving; {failed} service{'' if failed == 1 else 's'}"
                                    " failed (superd status lists them)" if failed else "")

    def stopService(self) -> Deferred[None]:
        if self._old_hup is not None:
            self._install_signal(signal.SIGHUP, self._old_hup)
            self._old_hup = None
        _log.info("superd stopping", event=events.EV_STOPPING)
        notify.stopping(self._environ)
        return super().stopService()


def build_groups(config: Configuration, parts: Parts, builders: Builders = SUPERD_BUILDERS,
                 *, isolate: bool = True) -> Tuple[List[Group], Configuration]:
    """
    The children of every service of ``config`` (nothing is bound yet), and
    the configuration that runs: ``config`` with each service whose handler
    cannot be built failed (``superd.daemon.isolation.without``).  Without
    ``isolate``, raises ``ConfigError`` listing every such service instead.
    """
    groups, failures = Assembly(parts, config, builders).build(config.services)
    if failures and not isolate:
        raise ConfigError([problem for _, problem in failures])
    return groups, without(config, failures) if failures else config


def build_service(config: Configuration, parts: Parts, *,
                  on_bind_error: Callable[[BindError], NoReturn] = _raise,
                  install_signal: Callable[..., Any] = signal.signal,
                  settle_heap: Callable[[], object] = lambda: None,
                  builders: Builders = SUPERD_BUILDERS,
                  service_log: Optional[ServiceLogService] = None,
                  isolate: bool = True) -> SuperdService:
    """
    The service tree for ``config``.  A service whose handler cannot be built
    does not run and is listed with the failed ones in the tree's
    ``configuration``; without ``isolate`` (all or nothing), raises
    ``ConfigError`` listing every such service.  Nothing is bound until the
    tree starts.
    """
    groups, config = build_groups(config, parts, builders, isolate=isolate)
    if service_log is None:
        # Opened here, before twistd could drop privileges; failures are logged.
        reactor = parts.runtime.reactor
        service_log = ServiceLogService(ServiceLogRouter(
            config, reactor, syslog_ident=parts.runtime.options.syslog_ident,
            after_turn=lambda flush: reactor.callLater(0, flush)))
    top = SuperdService(parts, config, service_log, on_bind_error=on_bind_error,
                        install_signal=install_signal, settle_heap=settle_heap,
                        builders=builders)
    parts.access.ban_ends_sessions = config.ban_ends_sessions
    top.groups = groups
    for _, children in top.groups:
        top.add_listeners(children)
    return top
