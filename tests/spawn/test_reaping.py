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
    """Children's pidfds share one reactor reader; when it fires after a
    child exited, that child (and only it) is reaped with its status, and
    its pidfd is closed."""
    reactor = MemoryReactorClock()
    statuses: List[Any] = []
    pidfds: List[int] = []

    def pidfd_open(pid: int) -> int:
        pidfds.append(os.pidfd_open(pid))
        return pidfds[-1]

    reaping = PidfdReaping(reactor, pidfd_open)
    sleeper = os.posix_spawn("/bin/sleep", ["sleep", "5"], {})
    reaping.watch(sleeper, lambda status: statuses.append(("sleeper", status)))
    pid = spawn_exit(4)
    reaping.watch(pid, lambda status: statuses.append(("exit4", status)))
    (watch,) = reactor.getReaders()
    deadline = time.monotonic() + 10
    while not statuses and time.monotonic() < deadline:
        watch.doRead()
        time.sleep(0.01)
    assert statuses == [("exit4", ExitStatus(4 << 8, 4))]
    assert reaping.open == 1 and reactor.getReaders() == [watch]
    with pytest.raises(OSError):
        os.fstat(pidfds[1])
    os.kill(sleeper, 9)
    while len(statuses) < 2 and time.monotonic() < deadline:
        watch.doRead()
        time.sleep(0.01)
    assert statuses[1] == ("sleeper", ExitStatus(9, None, 9))
    assert reaping.open == 0
    watch.connectionLost(None)  # type: ignore[arg-type]
    assert reactor.getReaders() == []


@needs_pidfd
def test_pidfd_early_read_waits() -> None:
    """A wake-up before the child ended reaps nothing; a child reaped by
    someone else is reported without a status."""
    reactor = MemoryReactorClock()
    statuses: List[ExitStatus] = []
    pid = os.posix_spawn("/bin/sleep", ["sleep", "5"], {})
    reaping = PidfdReaping(reactor)
    reaping.watch(pid, statuses.append)
    (watch,) = reactor.getReaders()
    watch.doRead()
    assert statuses == [] and reaping.open == 1
    os.kill(pid, 9)
    os.waitpid(pid, 0)
    deadline = time.monotonic() + 10
    while not statuses and time.monotonic() < deadline:
        watch.doRead()
        time.sleep(0.01)
    assert statuses == [ExitStatus(None)] and reaping.open == 0


@needs_pidfd
def test_pidfds_are_closed_when_the_reactor_stops() -> None:
    """Children still running at reactor shutdown: their pidfds and the
    private set are closed, and the reader is gone."""
    reactor = MemoryReactorClock()
    pidfds: List[int] = []

    def pidfd_open(pid: int) -> int:
        pidfds.append(os.pidfd_open(pid))
        return pidfds[-1]

    pid = os.posix_spawn("/bin/sleep", ["sleep", "5"], {})
    reaping = PidfdReaping(reactor, pidfd_open)
    reaping.watch(pid, print)
    (watch,) = reactor.getReaders()
    poller_fd = watch.fileno()
    watch.connectionLost(None)  # type: ignore[arg-type]
    assert reactor.getReaders() == [] and reaping.open == 0
    for fd in (pidfds[0], poller_fd):
        with pytest.raises(OSError):
            os.fstat(fd)
    os.kill(pid, 9)
    os.waitpid(pid, 0)


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


class FakePoller:
    """A stand-in for the private epoll set, for fake pidfds."""

    def __init__(self) -> None:
        self.registered: List[int] = []

    def register(self, fd: int, mask: int) -> None:
        self.registered.append(fd)

    def unregister(self, fd: int) -> None:
        self.registered.remove(fd)

    def poll(self, timeout: float) -> List[Any]:
        return []

    def fileno(self) -> int:
        return 99

    def close(self) -> None:
        pass


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
    poller = FakePoller()
    reaping = PidfdReaping(reactor, pidfd_open,
                           TwistedReaping(lambda p, r: registered.append(p), lambda p, r: None),
                           budget=lambda: 2, poller=lambda: poller)
    for pid in (11, 12, 13, 14):
        reaping.watch(pid, print)
    assert opened == [11, 12] and registered == [13, 14] and reaping.open == 2
    assert poller.registered == [111, 112]
