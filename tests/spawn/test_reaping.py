"""Tests for superd.spawn.reaping: pidfd and SIGCHLD child watchers."""

from __future__ import annotations

import errno
import os
import time
from typing import Any, List

import pytest
from twisted.internet.testing import MemoryReactorClock

from superd.spawn.reaping import ExitStatus, PidfdReaping, TwistedReaping

needs_pidfd = pytest.mark.skipif(not hasattr(os, "pidfd_open"), reason="no pidfd_open")


def spawn_exit(code: int) -> int:
    return os.posix_spawn("/bin/sh", ["sh", "-c", f"exit {code}"], {})


@needs_pidfd
def test_pidfd_reaps_only_that_child() -> None:
    """A pidfd reader is registered per child; when it fires after the child
    exited, the child is reaped with its status and the pidfd is closed and
    unregistered."""
    reactor = MemoryReactorClock()
    statuses: List[ExitStatus] = []
    reaping = PidfdReaping(reactor)
    pid = spawn_exit(4)
    reaping.watch(pid, statuses.append)
    (watch,) = reactor.getReaders()
    fd = watch.fileno()
    deadline = time.monotonic() + 10
    while not statuses and time.monotonic() < deadline:
        watch.doRead()
        time.sleep(0.01)
    assert statuses == [ExitStatus(4 << 8, 4)]
    assert reactor.getReaders() == []
    with pytest.raises(OSError):
        os.fstat(fd)


@needs_pidfd
def test_pidfd_early_read_waits() -> None:
    """A spurious wake-up before the child ended reaps nothing."""
    reactor = MemoryReactorClock()
    statuses: List[ExitStatus] = []
    pid = os.posix_spawn("/bin/sleep", ["sleep", "5"], {})
    PidfdReaping(reactor).watch(pid, statuses.append)
    (watch,) = reactor.getReaders()
    watch.doRead()
    assert statuses == [] and reactor.getReaders() == [watch]
    os.kill(pid, 9)
    os.waitpid(pid, 0)
    watch.doRead()  # reaped by someone else: reported without a status
    assert statuses == [ExitStatus(None)]


def test_falls_back_when_kernel_refuses() -> None:
    """Without pidfd support the Twisted SIGCHLD registry is used, and
    pidfd_open is not tried again."""
    registered: List[Any] = []
    calls: List[int] = []

    def no_pidfd(pid: int) -> int:
        calls.append(pid)
        raise OSError(errno.ENOSYS, "Function not implemented")

    reaping = PidfdReaping(MemoryReactorClock(), no_pidfd,
                           TwistedReaping(lambda p, r: registered.append(p),
                                          lambda p, r: None))
    reaping.watch(11, print)
    reaping.watch(12, print)
    assert registered == [11, 12] and calls == [11]


def test_twisted_reaper_reports_already_ended() -> None:
    """registerReapProcessHandler may report a child that already ended."""
    statuses: List[ExitStatus] = []
    reapers: List[Any] = []
    TwistedReaping(lambda p, r: reapers.append(r), lambda p, r: None).watch(5, statuses.append)
    reapers[0].processEnded(256)
    assert statuses == [ExitStatus(256, 1)]


def test_pidfd_budget_and_descriptor_exhaustion() -> None:
    """pidfds are used only up to the budget, and a child whose pidfd cannot
    be opened (EMFILE) is reaped through SIGCHLD; neither disables pidfds."""
    registered: List[int] = []
    opened: List[int] = []
    fail = {13}

    def pidfd_open(pid: int) -> int:
        if pid in fail:
            raise OSError(errno.EMFILE, "Too many open files")
        opened.append(pid)
        return 100 + pid

    reactor = MemoryReactorClock()
    reaping = PidfdReaping(reactor, pidfd_open,
                           TwistedReaping(lambda p, r: registered.append(p), lambda p, r: None),
                           budget=lambda: 2)
    for pid in (11, 12, 13, 14):
        reaping.watch(pid, print)
    assert opened == [11, 12] and registered == [13, 14] and reaping.open == 2
    reaping._closed()  # what a pidfd watch reports when its child is reaped
    reaping.watch(15, print)
    assert opened == [11, 12, 15]
