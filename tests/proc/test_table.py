"""Tests for superd.proc.table: tracking children and stopping them."""

from __future__ import annotations

import errno
import os
import signal
from typing import Any, List

from twisted.internet.testing import MemoryReactorClock

from superd.core.session import Peer
from superd.observe.events import REASON_EXEC
from superd.proc.spawner import SpawnRequest
from superd.proc.table import Child, ProcessTable, prepare_process
from tests.fakes import FakeBackgroundSpawner, fake_processes
from tests.handlers.spawn.helpers import fake_parts

REQ = SpawnRequest("/bin/cat", ("cat",), {}, {0: 7, 1: 7, 2: 7})
PEER = Peer("127.0.0.1", 4000)


def table_with(n: int, service_id: str = "svc"):  # type: ignore[no-untyped-def]
    parts, spawner = fake_parts()
    runtime = parts.runtime
    table: ProcessTable = parts.processes
    children = [table.spawn(REQ, service_id, PEER) for _ in range(n)]
    return runtime, spawner, table, children


def test_spawn_tracks_child_and_counts() -> None:
    """A spawned child is listed with pid, service, peer and start time, and
    counted in the table's running count until it is reaped."""
    runtime, spawner, table, (child,) = table_with(1)
    runtime.reactor.advance(3)
    assert table.children() == (child,)
    assert (child.pid, child.pgid, child.service_id, child.peer, child.started) == (
        1000, 1000, "svc", PEER, 0.0)
    assert table.running == 1
    ended: List[Child] = []
    child.on_exit(ended.append)
    spawner.exit(child.pid, 2)
    assert ended == [child] and child.status is not None and child.status.code == 2
    assert table.children() == () and table.running == 0


def test_child_reaped_during_spawn_is_delivered_after() -> None:
    """A child reaped before spawn() returned is reported on the next turn,
    so callers can log START before EXIT."""
    parts, spawner = fake_parts()
    runtime = parts.runtime
    spawner.exit_during_spawn = 0
    child = parts.processes.spawn(REQ, "svc", None)
    ended: List[Child] = []
    child.on_exit(ended.append)
    assert ended == [] and parts.processes.running == 1
    runtime.reactor.advance(0)
    assert ended == [child] and parts.processes.running == 0


def test_stop_all_terms_groups_and_fires_when_reaped() -> None:
    """stop_all sends SIGTERM to every child's process group
    and fires once all are reaped, without waiting for the grace period."""
    runtime, spawner, table, children = table_with(3)
    done = table.stop_all(5.0)
    assert done.called
    assert [s for s in spawner.signals if s[1] == signal.SIGTERM] == [
        (c.pid, signal.SIGTERM) for c in children]
    assert runtime.reactor.getDelayedCalls() == []


def test_stop_kills_after_grace() -> None:
    """A child ignoring SIGTERM gets SIGKILL exactly when the grace ends."""
    runtime, spawner, table, (good, stubborn) = table_with(2)
    spawner.ignore_term.add(stubborn.pid)
    done = table.stop_all(5.0)
    # Continued too, in case it was stopped (it could not act on SIGTERM).
    assert (stubborn.pid, signal.SIGCONT) in spawner.signals
    runtime.reactor.advance(4.9)
    assert not done.called and stubborn.status is None
    runtime.reactor.advance(0.1)
    assert (stubborn.pid, signal.SIGKILL) in spawner.signals
    assert (good.pid, signal.SIGKILL) not in spawner.signals
    assert done.called and runtime.reactor.getDelayedCalls() == []


def test_stop_waits_for_lingering_group() -> None:
    """If the child exits but a grandchild in its group ignores SIGTERM,
    the stop waits for the grace period and kills the group."""
    runtime, spawner, table, (child,) = table_with(1)
    spawner.lingering.add(child.pid)
    done = table.stop_all(2.0)
    assert child.status is not None and not done.called
    runtime.reactor.advance(2.0)
    assert (child.pid, signal.SIGKILL) in spawner.signals and done.called


def test_stop_gives_up_on_unkillable() -> None:
    """A child that survives SIGKILL cannot hang superd's exit forever."""
    runtime, spawner, table, (child,) = table_with(1)
    spawner.ignore_term.add(child.pid)
    spawner.kill_group = lambda pgid, sig: True  # type: ignore[method-assign]
    done = table.stop_all(1.0)
    runtime.reactor.advance(1.0)
    assert not done.called
    runtime.reactor.advance(5.0)
    assert done.called


def test_stop_service_only_touches_that_service() -> None:
    """stop_service stops one service's children and leaves the others."""
    parts, spawner = fake_parts()
    table: ProcessTable = parts.processes
    a = table.spawn(REQ, "a", None)
    b = table.spawn(REQ, "b", None)
    done = table.stop_service("a", 5.0)
    assert done.called and a.status is not None and b.status is None
    assert table.children() == (b,)


def test_stop_touches_only_the_children_given() -> None:
    """stop(children) stops those (a session ended early) and no other; a
    child already reaped is not signalled."""
    runtime, spawner, table, (a, b, c) = table_with(3)
    spawner.exit(c.pid)
    done = table.stop((a, c), 5.0)
    assert done.called and a.status is not None and b.status is None
    assert [pgid for pgid, signum in spawner.signals if signum == signal.SIGTERM] == [a.pid]
    assert table.children() == (b,)


def test_stop_with_nothing_running() -> None:
    """Stopping when nothing runs completes at once."""
    parts, _ = fake_parts()
    assert parts.processes.stop_all(5.0).called


def test_prepare_process_marks_inherited_fds() -> None:
    """The startup pass makes inherited descriptors close-on-exec."""
    r, w = os.pipe()
    os.set_inheritable(w, True)
    try:
        assert prepare_process() >= 1
        assert not os.get_inheritable(w)
    finally:
        os.close(r)
        os.close(w)


def test_empty_group_is_never_signalled_again() -> None:
    """Once a reaped child's group is found empty it is dropped, so a later
    SIGKILL at the deadline cannot hit a new process that reused the number."""
    runtime, spawner, table, (quick, stubborn) = table_with(2)
    spawner.ignore_term.add(stubborn.pid)
    table.stop_all(3.0)
    assert quick.status is not None
    spawner.lingering.add(quick.pid)  # the number now names someone else's group
    spawner.signals.clear()
    runtime.reactor.advance(3.0)
    assert spawner.signals == [(stubborn.pid, signal.SIGKILL)]


def background_table() -> tuple[Any, FakeBackgroundSpawner, ProcessTable]:
    reactor = MemoryReactorClock()
    spawner = FakeBackgroundSpawner()
    table, _ = fake_processes(reactor, spawner=spawner)
    return reactor, spawner, table


def start(table: ProcessTable, service_id: str = "svc") -> tuple[list[Child], list[Any]]:
    started: list[Child] = []
    failed: list[Any] = []
    table.start(REQ, service_id, PEER, started.append, failed.append)
    return started, failed


def test_background_start_counts_at_once_and_tracks_once_started() -> None:
    """A child started off the reactor thread counts for --limit from the
    request on; started() comes with its pid, and it is tracked until reaped."""
    _, spawner, table = background_table()
    started, failed = start(table)
    assert started == [] and failed == [] and table.running == 1 and table.children() == ()
    spawner.finish()
    (child,) = started
    assert child.pid == 1000 and table.children() == (child,) and table.running == 1
    spawner.exit(child.pid)
    assert child.status is not None and table.running == 0


def test_background_failure_releases_the_count() -> None:
    """A child that could not start: failed(error), and nothing counted."""
    _, spawner, table = background_table()
    spawner.fail_next(REASON_EXEC, errno.ENOENT)
    started, failed = start(table)
    spawner.finish()
    assert started == [] and [e.reason for e in failed] == [REASON_EXEC]
    assert table.running == 0 and table.children() == ()


def test_a_declined_background_start_spawns_at_once() -> None:
    """When the spawner cannot take the request now, it is spawned on the
    spot and reported before start() returns."""
    _, spawner, table = background_table()
    spawner.accepting = False
    started, _ = start(table)
    assert [c.pid for c in started] == [1000] and spawner.queued == []


def test_stop_waits_for_children_being_started_then_stops_them() -> None:
    """A stop that finds children still being started waits for their pids,
    then terms them with the others; a stop of another service does not
    wait for them."""
    reactor, spawner, table = background_table()
    started, _ = start(table, "svc")
    other = table.stop_service("other", 5.0)
    assert other.called
    done = table.stop_all(5.0)
    assert not done.called and spawner.signals == []
    spawner.finish()
    (child,) = started
    assert (child.pid, signal.SIGTERM) in spawner.signals
    assert child.status is not None and done.called
