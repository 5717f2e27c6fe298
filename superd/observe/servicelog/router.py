"""
The service-log router: a ``twisted.logger`` observer that writes each
event's xinetd line to the ``log_type`` target of the event's service.

Events from ``superd.observe.events`` (START/EXIT/FAIL) and ``superd.access.ident``
(USERID/NOID) carry the rendered line in ``xinetd_line`` (None when the
service's flags ask for nothing), the service in ``service_id`` and its
configuration block in ``service_block`` (two blocks may share an id; each
block's lines go to its own target); every other event is ignored.  Add the
router to ``globalLogPublisher`` beside the main-log observer; the main log
(text or JSON) is unaffected.

Targets are keyed by their frozen config value: services whose
``log_type`` values are equal share one sink.  Every service that inherits
``log_type = FILE ...`` from ``defaults`` carries an equal ``FileLog``, so
they share one descriptor and one size account, as xinetd's defaults log.
(xinetd opens a file named again by another service a second time and counts
its size per handle; superd shares it, so the limits bound the file.)
"""

from __future__ import annotations

import os
import syslog as _stdlib_syslog
import time
from typing import Any, Callable, Protocol

from twisted.logger import ILogObserver, LogEvent, Logger
from zope.interface import implementer

from superd.config.model import Configuration, FileLog, LogTarget, SyslogLog
from superd.observe.events import EV_SERVICE_LOG_ERROR, block_of
from superd.observe.servicelog.filelog import (
    AfterTurn,
    FileSink,
    LocalTime,
    Opener,
    Writer,
)
from superd.observe.servicelog.syslogsink import SyslogSink, open_syslog

__all__ = ["ServiceLogRouter"]

Sink = FileSink | SyslogSink

_log = Logger(namespace="superd.servicelog")


class Clock(Protocol):
    """What the router needs of the reactor: ``IReactorTime.seconds``."""

    def seconds(self) -> float:
        """Seconds since the epoch."""
        ...


@implementer(ILogObserver)
class ServiceLogRouter:
    """Routes ``xinetd_line`` events to each service's FILE or SYSLOG log."""

    def __init__(self, config: Configuration, clock: Clock, *,
                 syslog_module: Any = _stdlib_syslog, syslog_ident: str = "superd",
                 opener: Opener = os.open, writer: Writer = os.write,
                 localtime: LocalTime = time.localtime,
                 after_turn: AfterTurn | None = None) -> None:
        """
        Open every target of ``config`` (failures are logged, not raised).
        With ``after_turn``, FILE logs write each reactor turn's lines
        together at its end (``filelog``); without, each line at once.
        """
        self._after_turn = after_turn
        self._clock = clock
        self._syslog = syslog_module
        self._syslog_opened = False
        self._syslog_ident = syslog_ident
        self._opener = opener
        self._writer = writer
        self._localtime = localtime
        self._sinks: dict[LogTarget, Sink] = {}
        self._routes: dict[str, tuple[Sink, ...]] = {}
        #: The ids in ``_routes``, one set kept for the router's life, so
        #: that ``logs_service`` is a C-level call (it runs per connection).
        self._logged: set[str] = set()
        #: Whether a service id has a service log (lines of others are dropped).
        self.logs_service: Callable[[str], bool] = self._logged.__contains__
        self._blocks: dict[object, tuple[Sink, ...]] = {}
        self._broken: set[int] = set()
        self.update(config)

    def __call__(self, event: LogEvent) -> None:
        """Write the event's xinetd line, if it has one; never raises."""
        line = event.get("xinetd_line")
        if line is None:
            return
        service_id = event.get("service_id")
        if not isinstance(service_id, str) or not isinstance(line, str):
            return
        self.write_line(service_id, event.get("service_block"), line)

    def write_line(self, service_id: str, service_block: object,
                   line: str) -> None:
        """
        Write ``line`` of ``service_id`` to its targets; never raises.  The
        whole of what the router takes from an event, so the channel of
        per-connection events can hand it over without building one.
        """
        # The block's own targets when the event names a block of the
        # running configuration (even none); else every block of that id
        # (an event without a block, or from a block a reload replaced).
        sinks = self._blocks.get(service_block)
        if sinks is None:
            sinks = self._routes.get(service_id)
        if not sinks:
            return
        now = self._clock.seconds()
        for sink in sinks:
            try:
                sink.write(service_id, line, now)
            except Exception as error:
                self._report_broken(sink, service_id, error)

    def targets(self) -> dict[str, tuple[LogTarget, ...]]:
        """Service id -> its log targets (for status and tests)."""
        return {sid: tuple(s.target for s in sinks)
                for sid, sinks in self._routes.items()}

    def sink_for(self, target: LogTarget) -> Sink | None:
        """The open sink of ``target``, if any service uses it."""
        return self._sinks.get(target)

    def update(self, config: Configuration) -> None:
        """
        Switch to ``config``: targets no longer used are closed, new ones
        opened, unchanged ones kept as they are (no reopen: call
        ``reopen()`` for that).
        """
        owners, routes, blocks = _plan(config)
        for target in list(self._sinks):
            if target not in owners:
                self._sinks.pop(target).close()
        for target, owner in owners.items():
            if target not in self._sinks:
                self._sinks[target] = self._open_sink(target, owner)
        self._routes = {sid: tuple(self._sinks[t] for t in targets)
                        for sid, targets in routes.items()}
        self._logged.clear()
        self._logged.update(self._routes)
        self._blocks = {block: () if target is None else (self._sinks[target],)
                        for block, target in blocks.items()}

    def reopen(self) -> None:
        """Close and reopen every file (log rotation, resuming suspended logs)."""
        self._broken.clear()
        for sink in self._sinks.values():
            sink.reopen()

    def close(self) -> None:
        """Close every file; the router writes nothing more until ``update``."""
        for sink in self._sinks.values():
            sink.close()
        self._sinks.clear()
        self._routes = {}
        self._logged.clear()
        self._blocks = {}

    def _open_sink(self, target: LogTarget, owner: str) -> Sink:
        if isinstance(target, SyslogLog):
            if not self._syslog_opened:
                open_syslog(self._syslog, self._syslog_ident)
                self._syslog_opened = True
            return SyslogSink(target, self._syslog)
        sink = FileSink(target, owner, opener=self._opener,
                        writer=self._writer, localtime=self._localtime,
                        after_turn=self._after_turn)
        sink.open()
        return sink

    def _report_broken(self, sink: Sink, service_id: str,
                       error: Exception) -> None:
        # Report an unexpected failure once per sink until the next reopen,
        # so a broken target cannot flood the main log.
        if id(sink) in self._broken:
            return
        self._broken.add(id(sink))
        _log.error("service log of '{service_id}' failed: {error}",
                   event=EV_SERVICE_LOG_ERROR, service_id=service_id,
                   operation="write", error=repr(error),
                   target=_describe(sink.target))


def _plan(config: Configuration) -> tuple[dict[LogTarget, str],
                                          dict[str, list[LogTarget]],
                                          dict[str, LogTarget | None]]:
    """(target -> first service using it, service id -> the targets of its
    blocks, block (``events.block_of``) -> its target or None)."""
    owners: dict[LogTarget, str] = {}
    routes: dict[str, list[LogTarget]] = {}
    blocks: dict[str, LogTarget | None] = {}
    ambiguous: set[str] = set()
    for service in config.services:
        target = service.log_type
        block = block_of(service)
        if block in blocks and blocks[block] != target:
            # Loaded blocks have distinct keys; a configuration built in
            # code may not: route such blocks' lines by id.
            ambiguous.add(block)
        blocks[block] = target
        if target is None:
            continue
        owners.setdefault(target, service.id)
        targets = routes.setdefault(service.id, [])
        if target not in targets:
            targets.append(target)
    for duplicate in ambiguous:
        del blocks[duplicate]
    return owners, routes, blocks


def _describe(target: LogTarget) -> str:
    if isinstance(target, FileLog):
        return f"FILE {target.path}"
    return f"SYSLOG {target.facility} {target.level}"
