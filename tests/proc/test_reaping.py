"""Tests for superd.proc.reaping: the SIGCHLD child watchers."""

from __future__ import annotations

import os
import time
from typing import Any, Callable, Dict, List

from twisted.internet import process
from twisted.internet.task import Clock

from superd.proc.reaping import ExitReaping, ExitStatus, TwistedReaping


def spawn_exit(code: int) -> int:
    return os.posix_spawn("/bin/sh", ["sh", "-c", f"exit {code}"], {})


def wait_for(check: Callable[[], bool], reaping: ExitReaping) -> None:
    """Call reapProcess (as Twisted does on SIGCHLD) until ``check`` holds."""
    deadline = time.monotonic() + 10
    while not check() and time.monotonic() < deadline:
        reaping.reapProcess()
        time.sleep(0.01)


def wait_zombie(pid: int) -> None:
    """Until ``pid`` has ended (and waits to be reaped)."""
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        found = os.waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG | os.WNOWAIT)
        if found is not None and found.si_pid == pid:
            return
        time.sleep(0.01)
    raise AssertionError(f"child {pid} did not end")


def test_exit_reaping_reaps_only_ended_children() -> None:
    """Each SIGCHLD wake-up reaps the children of ours that ended, with
    their status, and leaves running ones watched."""
    handlers: Dict[int, Any] = {}
    reaping = ExitReaping(Clock(), handlers)
    statuses: List[Any] = []
    sleeper = os.posix_spawn("/bin/sleep", ["sleep", "5"], {})
    reaping.watch(sleeper, lambda status: statuses.append(("sleeper", status)))
    reaping.watch(spawn_exit(4), lambda status: statuses.append(("exit4", status)))
    wait_for(lambda: bool(statuses), reaping)
    assert statuses == [("exit4", ExitStatus(4 << 8, 4))] and reaping.running == 1
    os.kill(sleeper, 9)
    wait_for(lambda: len(statuses) == 2, reaping)
    assert statuses[1] == ("sleeper", ExitStatus(9, None, 9)) and reaping.running == 0
    reaping.close()


def test_exit_reaping_leaves_other_owners_zombies() -> None:
    """A zombie that is not ours (Twisted's spawnProcess, say) is not reaped:
    its owner still gets its status; ours behind it are still found."""
    reaping = ExitReaping(Clock(), {})
    foreign = spawn_exit(7)
    wait_zombie(foreign)  # the foreign child is the oldest zombie
    statuses: List[ExitStatus] = []
    reaping.watch(spawn_exit(5), statuses.append)
    wait_for(lambda: bool(statuses), reaping)
    assert statuses == [ExitStatus(5 << 8, 5)]
    assert os.waitpid(foreign, os.WNOHANG) == (foreign, 7 << 8)
    reaping.close()


def test_exit_reaping_is_called_by_twisted_on_sigchld() -> None:
    """One entry in Twisted's registry, under a key no pid can have; Twisted's
    reapAllProcesses (its SIGCHLD handler) reaps our children; close leaves."""
    reaping = ExitReaping(Clock())
    try:
        keys = [k for k, v in process.reapProcessHandlers.items() if v is reaping]
        assert len(keys) == 1 and keys[0] < 0
        statuses: List[ExitStatus] = []
        reaping.watch(spawn_exit(3), statuses.append)
        deadline = time.monotonic() + 10
        while not statuses and time.monotonic() < deadline:
            process.reapAllProcesses()
            time.sleep(0.01)
        assert statuses == [ExitStatus(3 << 8, 3)]
    finally:
        reaping.close()
    assert reaping not in process.reapProcessHandlers.values()


def test_exit_reaping_sweeps_without_sigchld() -> None:
    """With no SIGCHLD handling, the periodic sweep still reaps; it stops
    when no child is left."""
    clock = Clock()
    reaping = ExitReaping(clock, {}, sweep=5.0)
    statuses: List[ExitStatus] = []
    pid = spawn_exit(2)
    reaping.watch(pid, statuses.append)
    os.waitid(os.P_PID, pid, os.WEXITED | os.WNOWAIT)  # it has ended
    clock.advance(5)
    assert statuses == [ExitStatus(2 << 8, 2)] and clock.getDelayedCalls() == []
    reaping.close()


def test_exit_callback_failure_does_not_stop_reaping(
        log_events: List[Dict[str, Any]]) -> None:
    """A watcher that raises is logged; the other ended children are still
    reaped and reported."""
    reaping = ExitReaping(Clock(), {})
    statuses: List[ExitStatus] = []

    def broken(status: ExitStatus) -> None:
        raise RuntimeError("bookkeeping bug")

    first, second = spawn_exit(1), spawn_exit(2)
    for pid in (first, second):
        os.waitid(os.P_PID, pid, os.WEXITED | os.WNOWAIT)
    reaping.watch(first, broken)
    reaping.watch(second, statuses.append)
    reaping.reapProcess()
    assert statuses == [ExitStatus(2 << 8, 2)] and reaping.running == 0
    assert any(e.get("log_failure") is not None for e in log_events)
    reaping.close()


def test_twisted_reaper_reports_already_ended() -> None:
    """registerReapProcessHandler may report a child that already ended."""
    statuses: List[ExitStatus] = []
    reapers: List[Any] = []
    TwistedReaping(lambda p, r: reapers.append(r), lambda p, r: None).watch(5, statuses.append)
    reapers[0].processEnded(256)
    assert statuses == [ExitStatus(256, 1)]
