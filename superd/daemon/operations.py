"""
The operator's side of a running daemon: SIGHUP reload, SIGUSR1 status dump,
the control socket for ``superd status``, and systemd notifications around
reloads.

The tap adds it to the ``SuperdService`` after the listeners, so it starts
once every socket is bound and stops first.  The reload and status machinery
is imported by the first reload or status request: a daemon that is never
asked does not hold it.
"""

from __future__ import annotations

import os
import signal
from typing import TYPE_CHECKING, Any, Callable, Dict, Mapping, Optional

from twisted.application.service import Service
from twisted.internet.defer import Deferred
from twisted.logger import Logger

from superd.config.model import Configuration
from superd.daemon import notify
from superd.daemon.control import ControlFactory, listen_control
from superd.daemon.service import SuperdService

if TYPE_CHECKING:
    from superd.daemon.reload import Loader, Reloader, ReloadResult

__all__ = ["Operations", "thread_loader"]

_log = Logger(namespace="superd.operations")

EV_STATUS = "status"


def thread_loader(reactor: Any, path: str, strict: bool = False) -> Loader:
    """Load the configuration at ``path`` in the reactor's thread pool."""
    def load() -> "Deferred[Configuration]":
        # Imported at the first reload, as the thread pool itself is made.
        from twisted.internet.threads import deferToThreadPool

        from superd.config.load import load_configuration

        return deferToThreadPool(reactor, reactor.getThreadPool(),
                                 load_configuration, path, strict=strict)
    return load


class Operations(Service):
    """Reload, status and the control socket of one ``SuperdService``."""

    name = "operations"

    def __init__(self, top: SuperdService, load: Loader, *,
                 environ: Mapping[str, str] = os.environ,
                 install_signal: Callable[..., Any] = signal.signal,
                 control: bool = True) -> None:
        self.top = top
        self._environ = environ
        self._install_signal = install_signal
        self._control_wanted = control
        self._load = load
        self._reloader: Optional[Reloader] = None
        self.control_port: Optional[Any] = None
        self._old_usr1: Any = None

    # -- lifetime ---------------------------------------------------------------

    def startService(self) -> None:
        super().startService()  # type: ignore[no-untyped-call]
        runtime = self.top.runtime
        if self._control_wanted:
            factory = ControlFactory({"status": self._status_request,
                                      "reload": self._reload_request}, runtime.reactor)
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

    @property
    def reloader(self) -> Reloader:
        """The reload machinery, made at the first reload."""
        if self._reloader is None:
            from superd.daemon.reload import Reloader

            self._reloader = Reloader(self.top, self._load, notify=self._notify)
        return self._reloader

    def reload(self) -> "Deferred[ReloadResult]":
        """Reload the configuration (all or nothing)."""
        return self.reloader.reload()

    def _reload_request(self, request: Dict[str, Any]) -> "Deferred[Dict[str, Any]]":
        # Answered when a reload that read the files after this request ends.
        return self.reload().addCallback(
            lambda result: {"ok": result.ok, "reload": result.as_dict()})

    def _notify(self, state: str) -> None:
        if state == "reloading":
            notify.reloading(self._environ)
            return
        last = self._reloader.last if self._reloader is not None else None
        text = "reload failed; previous configuration running" if last and not last.ok \
            else "serving"
        notify.ready(self._environ, text)

    # -- status -----------------------------------------------------------------

    def status(self) -> Dict[str, Any]:
        """The current status snapshot."""
        from superd.daemon.status import snapshot

        last = self._reloader.last if self._reloader is not None else None
        return snapshot(self.top, None if last is None else last.as_dict())

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
