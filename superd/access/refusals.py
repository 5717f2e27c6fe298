"""
FAIL lines for refused peers, without letting a flood become a log flood.

xinetd logs every refused TCP connection and one refused datagram per
source per minute (DGRAM_IGNORE_TIME).  Formatting and writing a log event
costs several times what refusing the connection does, so one source
hammering a service would spend superd's time on its log (and fill the
disk).  superd logs the first ``burst`` refusals of each (service, source,
reason) in a window and counts the rest; when the window is over, one
``refusals_suppressed`` event says how many were not logged.  A log scanner
still sees every source that is being refused, several times a window.
"""

from __future__ import annotations

from collections.abc import Hashable
from typing import Any

from twisted.internet.task import LoopingCall
from twisted.logger import Logger

from superd.access.decision import Decision
from superd.access.prefixes import source_key
from superd.config.model import ServiceConfig
from superd.core.session import Peer
from superd.observe import events

__all__ = ["RefusalLog"]

_log = Logger(namespace="superd")


class _Window:
    __slots__ = ("logged", "peer", "reason", "service", "start", "suppressed")

    def __init__(self, start: float, service: ServiceConfig, peer: Peer,
                 reason: str) -> None:
        self.start = start
        self.logged = 0
        self.suppressed = 0
        self.service = service
        self.peer = peer
        self.reason = reason


class RefusalLog:
    """Logs refusals: ``burst`` per key per ``window`` seconds, then a count."""

    def __init__(self, *, burst: int = 5, window: float = 10.0,
                 max_keys: int = 10_000) -> None:
        self.burst = burst
        self.window = window
        self._max_keys = max_keys
        self._windows: dict[Hashable, _Window] = {}
        self._sweeper: LoopingCall | None = None

    def refused(self, service: ServiceConfig, peer: Peer, decision: Decision,
                now: float, key: Hashable | None = None) -> None:
        """Record one refusal; log it unless its window is already full."""
        if key is None:
            # One window per IPv6 network under v6_source_prefix: a client
            # walking through the addresses of its /64 is one source here too.
            prefix = service.v6_source_prefix
            host = peer.host if prefix == 128 else source_key(peer.host, prefix)
            key = (service.id, host, decision.reason)
        window = self._windows.get(key)
        if window is None or not 0 <= now - window.start < self.window:
            if window is not None:
                self._summarise(window)
            elif len(self._windows) >= self._max_keys:
                self.sweep(now, everything=True)
            window = self._windows[key] = _Window(now, service, peer,
                                                  decision.reason)
        if window.logged < self.burst:
            window.logged += 1
            events.emit_fail(service, decision.reason, peer, decision.detail)
        else:
            window.suppressed += 1

    def _summarise(self, window: _Window) -> None:
        if window.suppressed:
            _log.info(
                "FAIL {service_id} {reason} from={peer_host}: {count} more"
                " refusals in {window}s not logged", event=events.EV_SUPPRESSED,
                service_id=window.service.id, reason=window.reason,
                peer_host=window.peer.host, count=window.suppressed,
                window=self.window)

    def sweep(self, now: float, everything: bool = False) -> None:
        """Summarise and forget windows that are over (or all of them)."""
        for key, window in list(self._windows.items()):
            if everything or not 0 <= now - window.start < self.window:
                self._summarise(window)
                del self._windows[key]

    def start(self, clock: Any) -> None:
        """Sweep every ``window`` seconds on ``clock``."""
        if self._sweeper is None:
            self._sweeper = LoopingCall(lambda: self.sweep(clock.seconds()))
            self._sweeper.clock = clock
            self._sweeper.start(self.window, now=False)

    def stop(self) -> None:
        """Stop sweeping."""
        if self._sweeper is not None and self._sweeper.running:
            self._sweeper.stop()
        self._sweeper = None
