"""
The operator's side of a running daemon: SIGHUP reload, SIGUSR1 status dump,
the control socket for ``superd status``, ``superd reload`` and ``superd
bans`` (``superd.daemon.bancontrol``), and systemd notifications around
reloads.

The tap adds it to the ``SuperdService`` after the listeners, so it starts
once every socket is bound and stops first.
"""

from __future__ import annotations

import os
import signal
from typing import TYPE_CHECKING, Any, Callable, Dict, Mapping, Optional

from twisted.application.service import Service
from twisted.internet.defer import Deferred
from twisted.internet.threads import deferToThreadPool
from twisted.logger import Logger

from superd.config.model import Configuration
from superd.daemon import notify
from superd.daemon.bancontrol import BanControl
from superd.daemon.control import ControlFactory, listen_control
from superd.daemon.isolation import bounded
from superd.daemon.service import SuperdService
from superd.observe import events

if TYPE_CHECKING:
    from superd.daemon.reload import Loader, Reloader, ReloadResult

__all__ = ["Operations", "thread_loader"]

_log = Logger(namespace="superd.operations")

EV_STATUS = events.EV_STATUS


def thread_loader(reactor: Any, path: str, strict: bool = False) -> "Loader":
    """Load the configuration at ``path`` in the reactor's thread pool, each
    service's errors apart (``isolate``): the reloader decides what runs."""
    def load_bounded() -> Configuration:
        from superd.config.load import load_configuration

        return bounded(load_configuration(path, strict=strict, isolate=True))

    def load() -> "Deferred[Configuration]":
        return deferToThreadPool(reactor, reactor.getThreadPool(), load_bounded)
    return load


def _status_text(last: "Optional[ReloadResult]") -> str:
    """The supervisor's one-line status after a reload."""
    if last is None or last.ok:
        return "serving"
    if last.partial and last.isolated is not None:
        failed = len(last.isolated.configuration.failed)
        return (f"reload partly applied: {failed} service{'' if failed == 1 else 's'}"
                " failed (superd status lists them)")
    return "reload failed; previous configuration running"


class Operations(Service):
    """Reload, status and the control socket of one ``SuperdService``."""

    name = "operations"

    def __init__(self, top: SuperdService, load: "Loader", *,
                 environ: Mapping[str, str] = os.environ,
                 install_signal: Callable[..., Any] = signal.signal,
                 control: bool = True, strict: bool = False,
                 config_path: Optional[str] = None) -> None:
        self.top = top
        #: The ``-c`` the daemon runs, for ``superd status``.
        self.config_path = config_path
        #: When the daemon started serving (reactor time), for ``superd status``.
        self.started: Optional[float] = None
        self._environ = environ
        self._install_signal = install_signal
        self._control_wanted = control
        self._load = load
        self._strict = strict
        self._reloader: "Optional[Reloader]" = None
        self.control_port: Optional[Any] = None
        self._old_usr1: Any = None

    # -- lifetime ---------------------------------------------------------------

    def startService(self) -> None:
        super().startService()  # type: ignore[no-untyped-call]
        runtime = self.top.runtime
        self.started = runtime.seconds()
        if self._control_wanted:
            factory = ControlFactory({"status": self._status_request,
                                      "reload": self._reload_request,
                                      **BanControl(self.top.access).commands()},
                                     runtime.reactor)
            self.control_port = listen_control(runtime.reactor, runtime.options.state_dir,
                                               factory)
        self._old_usr1 = self._install_signal(signal.SIGUSR1, self._on_usr1)

    def stopService(self) -> None:
        super().stopService()  # type: ignore[no-untyped-call]
        if self._old_usr1 is not None:
            self._install_signal(signal.SIGUSR1, self._old_usr1)
            self._old_usr1 = None
        port, self.control_port = self.control_port, None
        if port is not None:
            port.stopListening()

    # -- reload -----------------------------------------------------------------

    # The reload and status machinery is imported at the first reload or
    # status request: a daemon that is never reloaded or asked does not hold it.

    @property
    def reloader(self) -> "Reloader":
        """Runs this daemon's reloads (made at the first one)."""
        if self._reloader is None:
            from superd.daemon.reload import Reloader

            self._reloader = Reloader(self.top, self._load, notify=self._notify,
                                      strict=self._strict)
        return self._reloader

    @property
    def last_reload(self) -> "Optional[ReloadResult]":
        """The outcome of the last reload (None: none yet)."""
        return None if self._reloader is None else self._reloader.last

    def reload(self) -> "Deferred[ReloadResult]":
        """Reload the configuration (``superd.daemon.reload``)."""
        return self.reloader.reload()

    def _reload_request(self, request: Dict[str, Any]) -> "Deferred[Dict[str, Any]]":
        # Answered when a reload that read the files after this request ends.
        return self.reload().addCallback(
            lambda result: {"ok": result.ok, "reload": result.as_dict()})

    def _notify(self, state: str) -> None:
        if state == "reloading":
            notify.reloading(self._environ)
            return
        notify.ready(self._environ, _status_text(self.last_reload))

    # -- status -----------------------------------------------------------------

    def status(self) -> Dict[str, Any]:
        """The current status snapshot."""
        from superd.daemon.status import snapshot

        last = self.last_reload
        return snapshot(self.top, None if last is None else last.as_dict(),
                        started=self.started, config=self.config_path)

    def _status_request(self, request: Dict[str, Any]) -> Dict[str, Any]:
        return {"ok": True, "status": self.status()}

    def _on_usr1(self, signum: int, frame: object) -> None:
        # Signal handlers run between bytecodes: hop into the reactor.
        self.top.runtime.reactor.callFromThread(self.log_status)
        previous = self._old_usr1
        if callable(previous):  # twistd's log rotation, when it has a log file
            previous(signum, frame)

    def log_status(self) -> None:
        """SIGUSR1: the status as one event (text in ``status_text``, values in ``status``)."""
        from superd.daemon.status import render_text

        status = self.status()
        _log.info("status:\n{status_text}", event=EV_STATUS, status=status,
                  status_text=render_text(status))
