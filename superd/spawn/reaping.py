"""
Learning that a child ended, and how: two interchangeable watchers.

``TwistedReaping`` registers each child with Twisted's SIGCHLD machinery
(``registerReapProcessHandler``).  On every SIGCHLD Twisted calls
``waitpid(pid, WNOHANG)`` for *every* registered child: measured 0.8 ms per
SIGCHLD with 1,000 children running (long ssh sessions, say), so at a few
hundred short connections a second the reactor would spend half its time
asking children that are still alive.

``PidfdReaping`` (Linux >= 5.3) opens a pidfd per child and lets the reactor
poll it: the pidfd becomes readable when that child exits, and only that
child is reaped.  Cost per child is constant (open, epoll add/del, close)
whatever the number of children.  The pidfd is close-on-exec, so it never
reaches another child.  Where ``pidfd_open`` is missing or refused, it falls
back to ``TwistedReaping`` for good.  A pidfd is one descriptor per running
child, so at most a quarter of superd's descriptor limit is spent on them
(accepting connections needs the rest); children beyond that, or started when
descriptors run out, are reaped through SIGCHLD instead.
"""

from __future__ import annotations

import errno
import os
import resource
from typing import Any, Callable, Optional

import attrs
from twisted.internet import process
from twisted.internet.interfaces import IReadDescriptor
from twisted.python.failure import Failure
from zope.interface import implementer

__all__ = ["ExitStatus", "PidfdReaping", "TwistedReaping"]

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
        if raw is None:
            return cls(None)
        if os.WIFSIGNALED(raw):
            return cls(raw, None, os.WTERMSIG(raw), os.WCOREDUMP(raw))
        return cls(raw, os.WEXITSTATUS(raw))


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


@implementer(IReadDescriptor)
class _PidfdWatch:
    """A reactor reader on one child's pidfd."""

    def __init__(self, reactor: Any, pid: int, fd: int, on_exit: OnExit,
                 closed: Callable[[], None]) -> None:
        self._reactor = reactor
        self.pid = pid
        self._fd = fd
        self._on_exit = on_exit
        self._closed = closed

    def fileno(self) -> int:
        return self._fd

    def logPrefix(self) -> str:
        return f"child {self.pid}"

    def doRead(self) -> None:
        status = _reap(self.pid)
        if status is None:
            return  # not over yet (cannot happen for a single-threaded exit)
        self._close()
        self._on_exit(status)

    def connectionLost(self, reason: Failure) -> None:
        # The reactor is shutting down with the child still running.
        self._close()

    def _close(self) -> None:
        if self._fd >= 0:
            self._reactor.removeReader(self)
            os.close(self._fd)
            self._fd = -1
            self._closed()


class PidfdReaping:
    """Children reaped when their pidfd becomes readable (O(1) per exit)."""

    name = "pidfd"

    def __init__(self, reactor: Any,
                 pidfd_open: Optional[Callable[[int], int]] = getattr(os, "pidfd_open", None),
                 fallback: Optional[TwistedReaping] = None,
                 budget: Optional[Callable[[], int]] = None) -> None:
        self._reactor = reactor
        self._pidfd_open = pidfd_open
        self._fallback = TwistedReaping() if fallback is None else fallback
        self._budget = _quarter_of_nofile if budget is None else budget
        #: pidfds currently open.
        self.open = 0

    def watch(self, pid: int, on_exit: OnExit) -> None:
        """Call ``on_exit`` once ``pid`` has been reaped."""
        fd = self._open_pidfd(pid)
        if fd is None:
            self._fallback.watch(pid, on_exit)
            return
        self.open += 1
        self._reactor.addReader(
            _PidfdWatch(self._reactor, pid, fd, on_exit, self._closed))

    def _open_pidfd(self, pid: int) -> Optional[int]:
        if self._pidfd_open is None or self.open >= self._budget():
            return None
        try:
            return self._pidfd_open(pid)
        except OSError as e:
            if e.errno in (errno.ENOSYS, errno.EINVAL, errno.EPERM):
                self._pidfd_open = None  # this kernel cannot: stop trying
            return None  # EMFILE, ENFILE, ENOMEM: this child only

    def _closed(self) -> None:
        self.open -= 1


def _quarter_of_nofile() -> int:
    soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    return (1 << 20) if soft == resource.RLIM_INFINITY else soft // 4
