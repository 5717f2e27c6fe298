"""
Tests for superd.proc.tracking with the fake spawner: process groups that
outlive their leader are remembered per service, pruned once empty, never
confused with a new child reusing the number, and stopped with their
service; a cgroup tracker moves each child and stops the whole cgroup.
"""

from __future__ import annotations

import signal
from pathlib import Path
from typing import Any, List, Tuple

import attrs
import pytest

from superd.proc import cgroups
from superd.proc.cgroups import CgroupTree, Limits
from superd.proc.spawner import SpawnRequest
from superd.proc.table import ProcessTable
from superd.proc.tracking import Cgroups, ProcessGroups
from tests.fakes import FakeSpawner
from tests.handlers.spawn.helpers import fake_parts

REQ = SpawnRequest("/bin/sh", ("sh",), {}, {0: 7, 1: 7, 2: 7})


def setup() -> Tuple[Any, FakeSpawner, ProcessTable]:
    parts, spawner = fake_parts()
    return parts.runtime.reactor, spawner, parts.processes


def test_lingering_group_is_stopped_with_its_service() -> None:
    """A child exits leaving a process in its group: the daemon's stop
    signals that group, SIGKILLs it after the grace, and then finishes."""
    reactor, spawner, table = setup()
    child = table.spawn(REQ, "bg", None)
    spawner.lingering.add(child.pid)
    spawner.exit(child.pid)
    tracker = table.tracker
    assert isinstance(tracker, ProcessGroups) and tracker.lingering == {child.pid: "bg"}
    done = table.stop_all(2.0)
    assert (child.pid, signal.SIGTERM) in spawner.signals and not done.called
    reactor.advance(2.0)
    assert (child.pid, signal.SIGKILL) in spawner.signals and done.called
    assert reactor.getDelayedCalls() == []


def test_stop_finishes_when_the_group_empties_before_the_grace() -> None:
    """Descendants that go on SIGTERM end the stop early (it looks again
    every poll interval instead of waiting for the grace)."""
    reactor, spawner, table = setup()
    child = table.spawn(REQ, "bg", None)
    spawner.lingering.add(child.pid)
    spawner.exit(child.pid)
    done = table.stop_service("bg", 5.0)
    spawner.lingering.discard(child.pid)  # the grandchild obeyed SIGTERM
    reactor.advance(0.1)
    assert done.called and (child.pid, signal.SIGKILL) not in spawner.signals


def test_other_services_groups_are_left_alone() -> None:
    reactor, spawner, table = setup()
    a = table.spawn(REQ, "a", None)
    b = table.spawn(REQ, "b", None)
    spawner.lingering.update({a.pid, b.pid})
    spawner.exit(a.pid)
    spawner.exit(b.pid)
    table.stop_service("a", 1.0)
    reactor.advance(1.0)
    assert {pgid for pgid, _ in spawner.signals} == {a.pid}


def test_empty_groups_are_pruned_and_numbers_reused_safely() -> None:
    reactor, spawner, table = setup()
    tracker = table.tracker
    assert isinstance(tracker, ProcessGroups)
    child = table.spawn(REQ, "old", None)
    spawner.lingering.add(child.pid)
    spawner.exit(child.pid)
    spawner.lingering.discard(child.pid)
    reactor.advance(1.0)
    assert tracker.lingering == {} and reactor.getDelayedCalls() == []
    # A listed group whose number a new child gets is forgotten at once.
    tracker.lingering[2000] = "old"
    tracker.adopt("new", 2000, None)
    assert tracker.lingering == {}


def test_limits_need_a_cgroup() -> None:
    _, _, table = setup()
    problem = table.tracker.limits_problem(Limits(tasks_max=4))
    assert problem is not None and "cgroup v2 subtree" in problem
    assert table.tracker.limits_problem(Limits()) is None


def cgroup_table(tmp_path: Path, monkeypatch: pytest.MonkeyPatch
                 ) -> Tuple[Any, FakeSpawner, ProcessTable, CgroupTree, List[Tuple[str, int]]]:
    monkeypatch.setattr(cgroups, "_write", lambda path, text: Path(path).write_text(text))
    root = tmp_path / "cg"
    root.mkdir()
    (root / "cgroup.controllers").write_text("memory pids\n")
    sent: List[Tuple[int, int]] = []
    tree = CgroupTree(str(root), own_pid=1, proc=str(tmp_path / "proc"),
                      kill=lambda pid, sig: sent.append((pid, sig))).open()
    moved: List[Tuple[str, int]] = []
    parts, spawner = fake_parts()
    tracker = Cgroups(tree, spawner, parts.runtime.reactor,
                      move=lambda procs, pid: moved.append((procs, pid)))
    table = ProcessTable(parts.runtime.reactor, spawner, environ={},
                         identity=parts.processes.identity, tracker=tracker)
    return parts.runtime.reactor, spawner, table, tree, moved


def test_cgroup_tracker_moves_children_and_stops_the_cgroup(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    reactor, spawner, table, tree, moved = cgroup_table(tmp_path, monkeypatch)
    child = table.spawn(REQ, "web", None)
    directory = Path(tree.directory("web"))
    assert moved == [(str(directory / "cgroup.procs"), child.pid)]
    # One that moved itself (join_prefix) is not moved again.
    table.spawn(REQ, "web", None)
    table.spawn(attrs.evolve(REQ, limits=Limits(tasks_max=3)), "web", None)
    assert len(moved) == 2
    spawner.exit(child.pid)
    (directory / "cgroup.events").write_text("populated 1\n")
    done = table.stop_service("web", 1.0)
    assert not done.called
    (directory / "cgroup.events").write_text("populated 0\n")
    for pid in spawner.running():
        spawner.kill(pid, signal.SIGTERM)
    reactor.advance(0.1)
    assert done.called and tree.services() == []  # removed (forgotten) once empty





