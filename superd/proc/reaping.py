"""
Learning that a child ended, and how: two interchangeable watchers.

``TwistedReaping`` registers each child with Twisted's SIGCHLD machinery
(``registerReapProcessHandler``).  On every SIGCHLD Twisted calls
``waitpid(pid, WNOHANG)`` for *every* registered child, so with many long
sessions running (ssh, say) and short connections arriving, the reactor
spends much of its time asking children that are still alive.

``ExitReaping`` keeps one entry in that registry for all of superd's
children.  On each SIGCHLD it peeks at the next ended child with
``waitid(P_ALL, WEXITED | WNOHANG | WNOWAIT)``, reaps it by pid if it is
one of ours, and repeats: a couple of system calls per *exited* child and
one per signal, whatever the number of children running.  A zombie that is
not ours (a user plugin's ``spawnProcess``) stays for its owner; behind one,
ours are asked one by one for that signal.  A sweep every few seconds
while children run covers a reactor without signal handlers.

Why not a pidfd per child: it costs four more system calls per child
(open, epoll add and delete, close) and a reactor event per exit, which
shows in the spawn benchmark (bench/README, "Why the code is the way it
is").
"""

from __future__ import annotations

import os
from typing import Any, Callable, Dict, Optional

import attrs
from twisted.internet import process
from twisted.internet.interfaces import IDelayedCall
from twisted.logger import Logger

from superd.core import twistedprivate
from superd.observe import events

__all__ = ["ExitReaping", "ExitStatus", "TwistedReaping"]

_log = Logger(namespace="superd.spawn")

OnExit = Callable[["ExitStatus"], None]


@attrs.frozen
class ExitStatus:
    """How a child ended, decoded from its ``waitpid`` status."""

    #: The raw wait status (None if the child was reaped by someone else).
    raw: Optional[int]
    code: Optional[int] = None
    signal: Optional[int] = None
    core: bool = False

    @classmethod
    def from_raw(cls, raw: Optional[int]) -> "ExitStatus":
        """Decode ``raw`` as ``os.waitpid`` returned it."""
        # Values are immutable and a few statuses recur (0 above all):
        # decode each once (raw is 16 bits, so the cache stays small).
        known = _DECODED.get(raw)
        if known is not None:
            return known
        if raw is None:
            status = cls(None)
        elif os.WIFSIGNALED(raw):
            status = cls(raw, None, os.WTERMSIG(raw), os.WCOREDUMP(raw))
        else:
            status = cls(raw, os.WEXITSTATUS(raw))
        _DECODED[raw] = status
        return status


_DECODED: Dict[Optional[int], ExitStatus] = {}


def _reap(pid: int) -> "Optional[ExitStatus]":
    """The child's status if it has ended (reaping it), else None."""
    try:
        reaped, status = os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        return ExitStatus.from_raw(None)  # someone else reaped it
    return ExitStatus.from_raw(status) if reaped else None


class _TwistedReaper:
    """What ``twisted.internet.process.reapAllProcesses`` calls, per child."""

    def __init__(self, pid: int, on_exit: OnExit,
                 unregister: Callable[[int, object], None]) -> None:
        self.pid = pid
        self._on_exit = on_exit
        self._unregister = unregister

    def reapProcess(self) -> None:
        status = _reap(self.pid)
        if status is not None:
            self._unregister(self.pid, self)
            self._on_exit(status)

    def processEnded(self, status: int) -> None:
        # Called by registerReapProcessHandler if the child had already ended.
        self._on_exit(ExitStatus.from_raw(status))


class TwistedReaping:
    """Children reaped by Twisted's SIGCHLD handler (O(children) per signal)."""

    name = "sigchld"

    def __init__(
        self,
        register: Callable[[int, object], None] = process.registerReapProcessHandler,
        unregister: Callable[[int, object], None] = process.unregisterReapProcessHandler,
    ) -> None:
        self._register = register
        self._unregister = unregister

    def watch(self, pid: int, on_exit: OnExit) -> None:
        """Call ``on_exit`` once ``pid`` has been reaped."""
        self._register(pid, _TwistedReaper(pid, on_exit, self._unregister))

    def reap_ended(self) -> None:
        """Nothing to do: registering a child already reaps it if it has ended."""


#: Seconds between safety sweeps while children run (a reactor started
#: without signal handlers never hears SIGCHLD).
SWEEP_INTERVAL = 5.0


class ExitReaping:
    """
    Children reaped on Twisted's SIGCHLD wake-up, at a cost per *exited*
    child (see the module docstring); one entry in Twisted's registry.
    """

    name = "sigchld"

    def __init__(self, reactor: Any,
                 handlers: Optional[Dict[int, Any]] = None,
                 waitid: Callable[..., Any] = os.waitid,
                 sweep: float = SWEEP_INTERVAL) -> None:
        self._reactor = reactor
        self._waitid = waitid
        self._sweep_interval = sweep
        self._sweep: Optional[IDelayedCall] = None
        #: pid -> on_exit of every child not reaped yet.
        self._children: Dict[int, OnExit] = {}
        # Twisted's reapAllProcesses calls reapProcess() of every value on
        # each SIGCHLD; a negative key is never a pid, so nothing else
        # ever looks this entry up or waits for it.
        self._key = -id(self)
        self._handlers = twistedprivate.reap_handlers() if handlers is None else handlers
        self._handlers[self._key] = self

    @property
    def running(self) -> int:
        """Children watched and not reaped yet."""
        return len(self._children)

    def watch(self, pid: int, on_exit: OnExit) -> None:
        """Call ``on_exit`` once ``pid`` has been reaped."""
        # No race with the child's SIGCHLD when the child was started on the
        # reactor thread: that is handled from the reactor loop, which cannot
        # run before this returns.  One started by another thread may have
        # ended, and its SIGCHLD been handled, already: see reap_ended.
        self._children[pid] = on_exit
        if self._sweep is None and self._sweep_interval > 0:
            self._sweep = self._reactor.callLater(self._sweep_interval, self._swept)

    def reapProcess(self) -> None:
        """Reap every ended child of ours (Twisted calls this on SIGCHLD)."""
        while self._children:
            try:
                # Peek (WNOWAIT): a zombie that is not ours stays for
                # whoever started it (Twisted's spawnProcess, say).
                found = self._waitid(os.P_ALL, 0, os.WEXITED | os.WNOHANG | os.WNOWAIT)
            except ChildProcessError:
                return
            if found is None or found.si_pid == 0:
                return
            pid = found.si_pid
            if pid not in self._children:
                # Another owner's zombie hides ours behind it (the kernel
                # reports the oldest first): ask ours one by one, this once.
                self._reap_each()
                return
            status = _reap(pid)
            if status is None:  # cannot happen after waitid found it; ask later
                self._reap_each()
                return
            self._report(pid, status)

    def reap_ended(self) -> None:
        """Reap the watched children that have ended already: for children
        started by another thread, watched once their pid came back (one
        look for a whole batch of them)."""
        self.reapProcess()

    def _reap_each(self) -> None:
        for pid in list(self._children):
            status = _reap(pid)
            if status is not None:
                self._report(pid, status)

    def _report(self, pid: int, status: ExitStatus) -> None:
        on_exit = self._children.pop(pid)
        try:
            on_exit(status)
        except Exception:
            # One child's bookkeeping must not leave the others unreaped.
            _log.failure("handling the exit of child {pid} failed",
                         event=events.EV_REAP_ERROR, pid=pid)

    def _swept(self) -> None:
        self._sweep = None
        self.reapProcess()
        if self._children and self._sweep_interval > 0:
            self._sweep = self._reactor.callLater(self._sweep_interval, self._swept)

    def close(self) -> None:
        """Leave Twisted's registry and stop sweeping (children stay watched
        by nobody: for tests and a process that stops managing children)."""
        self._handlers.pop(self._key, None)
        if self._sweep is not None and self._sweep.active():
            self._sweep.cancel()
        self._sweep = None
