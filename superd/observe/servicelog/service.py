"""
``ServiceLogService``: the service-log router's lifetime as an ``IService``.

Starting it adds the router to the log publisher (and to the channel of the
builtins' per-connection events, ``superd.observe.events.connection_events``);
stopping it removes the router and closes the files.  Add it to the top ``MultiService`` *first*:
services stop in reverse order, so it then stops last and the EXIT lines of
children reaped during shutdown still reach the service logs.
"""

from __future__ import annotations

from typing import Any

from twisted.application.service import Service
from twisted.logger import globalLogPublisher

from superd.observe.events import connection_events
from superd.observe.servicelog.router import ServiceLogRouter

__all__ = ["ServiceLogService"]


class ServiceLogService(Service):
    """Keeps ``router`` subscribed to ``publisher`` while running."""

    name = "servicelog"

    def __init__(self, router: ServiceLogRouter,
                 publisher: Any = globalLogPublisher) -> None:
        self.router = router
        self._publisher = publisher

    def startService(self) -> None:
        super().startService()  # type: ignore[no-untyped-call]
        self._publisher.addObserver(self.router)
        # START/EXIT of builtins: directly, unless the main log takes them.
        connection_events.add_direct(self.router, self.router.logs_service,
                                     lines=self.router.write_line)

    def stopService(self) -> None:
        self._publisher.removeObserver(self.router)
        connection_events.remove_direct(self.router)
        self.router.close()
        super().stopService()  # type: ignore[no-untyped-call]
