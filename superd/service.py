"""
The service tree: one listener per service per listen address.

``build_service`` turns a loaded ``Configuration`` into a ``SuperdService``
(a ``MultiService``) whose children ``superd.assembly`` chooses: the handler
for each service, the access-controlled factory around it, and a
``superd.listener.Listener`` per address.  Sockets are bound in
``privilegedStartService``, before twistd could drop privileges, and a
socket that cannot be bound stops startup with a message naming the service,
the address and the configuration line.  ``SuperdService`` also owns the
daemon's life: readiness, signals, and stopping children and sessions.
"""

from __future__ import annotations

import os
import signal
from typing import (
    Any,
    Callable,
    Iterable,
    List,
    Mapping,
    NoReturn,
    Optional,
    Tuple,
)

from twisted.application.service import IService, MultiService
from twisted.internet.defer import Deferred, gatherResults, succeed
from twisted.internet.error import ReactorNotRunning
from twisted.logger import Logger

from superd import events, notify
from superd.assembly import (
    Unavailable,
    problem_of,
    protected_ports,
    service_children,
    unavailable_problems,
)
from superd.config.errors import ConfigError, Problem
from superd.config.model import Configuration, ServiceConfig
from superd.listen import BindError
from superd.listener import Listener
from superd.runtime import Runtime

__all__ = [
    "Listener",
    "SuperdService",
    "Unavailable",
    "build_service",
    "notify_ready",
    "protected_ports",
    "unavailable_problems",
]

_log = Logger(namespace="superd.service")


def notify_ready(environ: Mapping[str, str]) -> bool:
    """Send ``READY=1`` to systemd's ``$NOTIFY_SOCKET`` if set; True if sent."""
    return notify.ready(environ)


def _first_only(handler: Callable[[int, Any], Any]) -> Callable[[int, Any], None]:
    """A signal handler that passes the first signal to ``handler`` and logs the rest."""
    seen: List[int] = []

    def once(signum: int, frame: Any) -> None:
        if seen:
            _log.info("signal {signum} again: already stopping", signum=signum)
            return
        seen.append(signum)
        handler(signum, frame)

    return once


def _raise(error: BindError) -> NoReturn:
    raise error


class SuperdService(MultiService):
    """
    The whole daemon: every listener, the SIGHUP guard, and orderly stop.

    ``on_bind_error`` decides what a failed bind does (the tap prints it and
    exits non-zero); ``install_signal`` is ``signal.signal`` outside tests.
    """

    def __init__(self, runtime: Runtime, *,
                 on_bind_error: Callable[[BindError], NoReturn] = _raise,
                 install_signal: Callable[..., Any] = signal.signal,
                 environ: Mapping[str, str] = os.environ,
                 settle_heap: Callable[[], object] = lambda: None) -> None:
        super().__init__()
        self.runtime = runtime
        #: Freezes the long-lived heap once it is built, at startup and after
        #: each successful reload (``superd.heap.settle`` in the daemon; unit
        #: tests keep the no-op: a full collection per start is slow there).
        self.settle_heap = settle_heap
        self._on_bind_error = on_bind_error
        self._install_signal = install_signal
        self._environ = environ
        self._old_hup: Any = None
        self.configuration: Optional[Configuration] = None
        #: xinetd-format service logs (superd.servicelog): started before the
        #: listeners and stopped after the children, so every EXIT line lands.
        self.service_log: Optional[Any] = None
        #: Each configured service with its children (sockets), in order:
        #: what a reload compares and moves (superd.reload).
        self.groups: List[Tuple[ServiceConfig, List[IService]]] = []
        #: Reload, status and the control socket (superd.operations), started
        #: after the listeners and stopped before them.
        self.operations: Optional[Any] = None

    def _guarded(self, start: Callable[[], None]) -> None:
        try:
            start()
        except BindError as e:
            _log.critical("{message}", event=events.EV_BIND_FAILED, message=str(e),
                          service_id=e.address.service_id, host=e.address.host,
                          port=e.address.port, protocol=e.address.protocol)
            self._close_listeners()
            self._on_bind_error(e)

    def _close_listeners(self) -> None:
        for child in self:
            port = getattr(child, "port", None)
            if port is not None:
                child.port = None
                port.stopListening()

    def privilegedStartService(self) -> None:
        self._guarded(super().privilegedStartService)

    def startService(self) -> None:
        if self.service_log is not None:
            self.service_log.startService()
        self._guarded(super().startService)
        if self.operations is not None:
            self.operations.startService()
        self._old_hup = self._install_signal(signal.SIGHUP, self._on_sighup)
        self.runtime.reactor.callWhenRunning(self._announce_ready)

    def _on_sighup(self, signum: int, frame: object) -> None:
        # Signal handlers run between bytecodes: hop into the reactor.
        self.runtime.reactor.callFromThread(self.reload)

    def reload(self) -> None:
        """
        SIGHUP: reload all or nothing (superd.operations).  Without it (unit
        tests) the service log files are still reopened, for logrotate.
        """
        if self.operations is not None:
            self.operations.reload()
            return
        _log.warn("reload is not implemented yet; service logs reopened", event="reload")
        if self.service_log is not None:
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
        _log.info("superd ready: {count} sockets listening", event=events.EV_READY,
                  count=self.socket_count(),
                  services=0 if self.configuration is None else len(self.configuration.services))
        notify_ready(self._environ)

    def stopService(self) -> Deferred[Any]:
        if self._old_hup is not None:
            self._install_signal(signal.SIGHUP, self._old_hup)
            self._old_hup = None
        _log.info("superd stopping", event=events.EV_STOPPING)
        notify.stopping(self._environ)
        if self.operations is not None:
            self.operations.stopService()
        stopped: Deferred[Any] = super().stopService()
        # Once the sockets are closed: children get SIGTERM while sessions
        # served in-process finish, both bounded by --grace.
        stopped.addCallback(lambda _: self._finish_sessions())
        service_log = self.service_log
        if service_log is not None:
            stopped.addBoth(lambda result: (service_log.stopService(), result)[1])
        return stopped

    def _finish_sessions(self) -> Deferred[Any]:
        grace = self.runtime.options.grace
        waits = [self._drain(grace)]
        processes = self.runtime.processes
        if processes is not None:
            waits.append(processes.stop_all(grace))
        return gatherResults(waits, consumeErrors=True).addCallback(lambda _: None)

    def _drain(self, grace: float) -> Deferred[None]:
        """
        Wait up to ``grace`` seconds for live sessions to end, so that a
        restart (socket activation: the next superd accepts on the same
        socket) cuts no exchange short; the reactor closes what is left.
        """
        from superd.access.setup import state_of

        counter = state_of(self.runtime).counter
        live = counter.live()
        if live == 0:
            return succeed(None)
        _log.info("waiting up to {grace} s for {count} sessions to end",
                  event=events.EV_DRAINING, count=live, grace=grace)

        def timed_out(result: object, timeout: float) -> None:
            _log.info("closing {count} sessions still open after {grace} s",
                      event=events.EV_DRAIN_TIMEOUT, count=counter.live(), grace=grace)

        idle = counter.when_idle()
        idle.addTimeout(grace, self.runtime.reactor, onTimeoutCancel=timed_out)
        return idle


def build_service(config: Configuration, runtime: Runtime, *,
                  on_bind_error: Callable[[BindError], NoReturn] = _raise,
                  install_signal: Callable[..., Any] = signal.signal,
                  settle_heap: Callable[[], object] = lambda: None) -> SuperdService:
    """
    The service tree for ``config``.  Raises ``ConfigError`` listing every
    service this build cannot run (nothing is bound until it starts).
    """
    from superd.servicelog import ServiceLogRouter, ServiceLogService

    top = SuperdService(runtime, on_bind_error=on_bind_error, install_signal=install_signal,
                        settle_heap=settle_heap)
    top.configuration = config
    # Opened here, before twistd could drop privileges; failures are logged.
    top.service_log = ServiceLogService(ServiceLogRouter(
        config, runtime.reactor, syslog_ident=runtime.options.syslog_ident))
    protected = protected_ports(config)
    problems: List[Problem] = []
    for service in config.services:
        try:
            children: Iterable[IService] = service_children(service, runtime, protected,
                                                            config.services)
        except Unavailable as e:
            problems.append(problem_of(service, e))
            continue
        top.groups.append((service, list(children)))
        for child in top.groups[-1][1]:
            child.setServiceParent(top)
    if problems:
        raise ConfigError(problems)
    return top
