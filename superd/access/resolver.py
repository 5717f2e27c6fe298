"""
Host names of a peer, found without blocking the reactor.

A peer's names are what its reverse lookup says, each *confirmed* by a
forward lookup that must give the peer's address back (a PTR record alone
is whatever the attacker's DNS says).  Lookups run in a thread (they must
honour nsswitch and ``/etc/hosts``; ``twisted.names`` asks DNS only and
has no PTR lookups in ``/etc/hosts``), are time-boxed, shared between concurrent
callers and cached with a TTL on the injected clock.
"""

from __future__ import annotations

import socket
from collections.abc import Callable
from typing import Any

import attrs
from twisted.internet.defer import Deferred, succeed
from twisted.logger import Logger
from twisted.python.failure import Failure

from superd.core.session import canonical_host
from superd.observe import events

__all__ = ["UNKNOWN_NAMES", "HostNames", "NameResolver", "lookup_names"]

_log = Logger(namespace="superd.access")


@attrs.frozen
class HostNames:
    """The confirmed names of one address (lower case, no trailing dot)."""

    names: frozenset[str] = frozenset()
    #: The reverse lookup gave names, but none of them confirmed.
    mismatch: bool = False

    @property
    def known(self) -> bool:
        """True when at least one name was confirmed."""
        return bool(self.names)


UNKNOWN_NAMES = HostNames()


def _normal(name: str) -> str:
    return name.lower().rstrip(".")


def _confirms(name: str, host: str) -> bool:
    try:
        infos = socket.getaddrinfo(name, None)
    except (OSError, UnicodeError):
        return False
    return any(canonical_host(str(info[4][0])) == host for info in infos)


def lookup_names(host: str) -> HostNames:
    """Blocking reverse lookup of ``host`` plus forward confirmation."""
    try:
        name, aliases, _ = socket.gethostbyaddr(host)
    except (OSError, UnicodeError):
        return UNKNOWN_NAMES
    candidates = {_normal(n) for n in (name, *aliases) if n}
    confirmed = frozenset(n for n in candidates if _confirms(n, host))
    return HostNames(confirmed, mismatch=bool(candidates) and not confirmed)


Runner = Callable[[Callable[[], HostNames]], "Deferred[HostNames]"]


def thread_runner(reactor: Any) -> Runner:
    """Run a blocking lookup in ``reactor``'s thread pool."""
    def run(call: Callable[[], HostNames]) -> Deferred[HostNames]:
        # Imported at the first lookup: Twisted's thread pool machinery is
        # memory a daemon that never looks a name up need not hold.
        from twisted.internet.threads import deferToThreadPool

        return deferToThreadPool(reactor, reactor.getThreadPool(), call)
    return run


class NameResolver:
    """Cached, shared, time-boxed lookups of peers' confirmed names."""

    def __init__(self, clock: Any, run: Runner, *,
                 lookup: Callable[[str], HostNames] = lookup_names,
                 ttl: float = 300.0, negative_ttl: float = 60.0,
                 timeout: float = 5.0, max_entries: int = 10_000,
                 max_pending: int = 256) -> None:
        self._clock = clock
        self._run = run
        self._lookup = lookup
        self._ttl = ttl
        self._negative_ttl = negative_ttl
        self._timeout = timeout
        self._max_entries = max_entries
        self._max_pending = max_pending
        self._cache: dict[str, tuple[float, HostNames]] = {}
        self._pending: dict[str, list[Deferred[HostNames]]] = {}

    def cached(self, host: str) -> HostNames | None:
        """The cached names of ``host``, or None if unknown or expired."""
        entry = self._cache.get(host)
        if entry is None:
            return None
        if entry[0] <= self._clock.seconds():
            del self._cache[host]
            return None
        return entry[1]

    def names(self, host: str) -> Deferred[HostNames]:
        """Fire with ``host``'s confirmed names; never fails."""
        hit = self.cached(host)
        if hit is not None:
            return succeed(hit)
        if host not in self._pending and len(self._pending) >= self._max_pending:
            # Many sources at once (a flood): answer "no names" rather than
            # queue lookups and hold their connections open.  Not cached.
            return succeed(UNKNOWN_NAMES)
        waiter: Deferred[HostNames] = Deferred()
        waiters = self._pending.setdefault(host, [])
        waiters.append(waiter)
        if len(waiters) == 1:
            self._start(host)
        return waiter

    def _start(self, host: str) -> None:
        lookup = self._lookup
        d = self._run(lambda: lookup(host))
        d.addTimeout(self._timeout, self._clock)
        d.addErrback(self._failed, host)
        d.addCallback(self._done, host)

    def _failed(self, failure: Failure, host: str) -> HostNames:
        _log.info("name lookup for {peer_host} failed: {error}",
                  event=events.EV_NAME_LOOKUP_FAILED, peer_host=host,
                  error=failure.getErrorMessage())
        return UNKNOWN_NAMES

    def _done(self, result: HostNames, host: str) -> None:
        ttl = self._ttl if result.known else self._negative_ttl
        if len(self._cache) >= self._max_entries:
            del self._cache[next(iter(self._cache))]
        self._cache[host] = (self._clock.seconds() + ttl, result)
        for waiter in self._pending.pop(host, []):
            waiter.callback(result)
