#!/usr/bin/env python3
"""
What confining and tracking a server costs per spawn (issue 13 item 10,
issue 17 item 6), as medians on this machine; run as root from the checkout:

    .venv/bin/python bench/spawncost.py [--rounds N] [--gap SECONDS]

1. spawn + exit of ``/bin/true`` through the argv ``build_spec`` makes for
   each sandbox setting (``no_new_privileges``, ``private_tmp``,
   ``read_only_paths``, and the child joining its cgroup itself, the way
   ``memory_max``/``tasks_max`` do), interleaved round by round;
2. the reactor thread's share of ``ProcessTable.spawn`` with each tracker
   (process groups; a cgroup per service, moved by the worker thread);
3. one write of a fresh child's pid to ``cgroup.procs`` from the spawning
   thread, the move superd does *not* do in the reactor thread.

Parts 1 (the cgroup join) and 2-3 need a writable cgroup2 file system; they
use a subtree of their own, removed at the end.  ``--gap`` sleeps between
spawns: occasional moves each wait for a kernel grace period, back-to-back
ones mostly do not.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import time
import uuid
from typing import Dict, List, Optional, Sequence

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from twisted.internet.testing import MemoryReactorClock

from superd.config.model import Credentials, Location, Sandbox, ServiceConfig, SocketType
from superd.handlers.spawn.spec import build_spec
from superd.proc.cgroups import CgroupTree, Limits, cgroup2_mount
from superd.proc.credentials import Identity, SpawningThread
from superd.proc.reaping import TwistedReaping
from superd.proc.spawner import PosixSpawner, SpawnRequest
from superd.proc.table import ProcessTable
from superd.proc.tracking import Cgroups, ProcessGroups, Tracker


class _JoinOnly:
    """A tracker that only hands out a cgroup to join (no limit files: a
    host without the memory and pids controllers can still measure the join)."""

    def __init__(self, tree: CgroupTree) -> None:
        self.tree = tree

    def limits_problem(self, limits: Limits) -> Optional[str]:
        return None

    def procs(self, service_id: str, limits: Limits) -> Optional[str]:
        return self.tree.prepare(service_id, Limits())


class _Table:
    """What ``build_spec`` reads from the daemon's process table."""

    def __init__(self, tracker: object) -> None:
        self.identity = Identity.current()
        self.environ = {"PATH": "/usr/bin:/bin"}
        self.tracker = tracker

    def find_program(self, name: str) -> Optional[str]:
        return shutil.which(name)

    def group_list(self, user: str, gid: int) -> Sequence[int]:
        return [gid]


def _service(sandbox: Sandbox) -> ServiceConfig:
    return ServiceConfig(
        name="cost", id="cost", location=Location("bench", 1), socket_type=SocketType.STREAM,
        protocol="tcp", wait=False, port=0, server="/bin/true", credentials=Credentials(),
        sandbox=sandbox)


def _median_ms(values: List[float]) -> str:
    return f"{statistics.median(values) * 1e3:8.2f} ms"


def prefixes(rounds: int, gap: float, tree: Optional[CgroupTree]) -> None:
    cases: Dict[str, Sandbox] = {
        "plain": Sandbox(),
        "no_new_privileges": Sandbox(no_new_privileges=True),
        "private_tmp": Sandbox(private_tmp=True),
        "read_only_paths = /etc": Sandbox(read_only_paths=("/etc",)),
    }
    table = _Table(_JoinOnly(tree) if tree is not None else None)
    specs = {name: build_spec(_service(sandbox), table) for name, sandbox in cases.items()}
    if tree is not None:
        specs["cgroup join in the child"] = build_spec(_service(Sandbox(tasks_max=64)), table)
    times: Dict[str, List[float]] = {name: [] for name in specs}
    for _ in range(rounds):
        for name, spec in specs.items():
            start = time.perf_counter()
            pid = os.posix_spawn(spec.executable, spec.argv, dict(spec.base_env), setsid=True)
            os.waitpid(pid, 0)
            times[name].append(time.perf_counter() - start)
            time.sleep(gap)
    print("spawn + exit of /bin/true, per sandbox setting (median):")
    for name, values in times.items():
        print(f"  {name:28s} {_median_ms(values)}")


def trackers(rounds: int, gap: float, tree: CgroupTree) -> None:
    reactor = MemoryReactorClock()
    spawner = PosixSpawner(SpawningThread(Identity.current(), None),
                           reaping=TwistedReaping(lambda pid, h: None, lambda pid, h: None))
    cgroups = Cgroups(tree, spawner, reactor)
    kinds: Dict[str, Tracker] = {"process groups": ProcessGroups(reactor, spawner),
                                 "cgroup, moved by a thread": cgroups}
    request = SpawnRequest("/bin/true", ("true",), {"PATH": "/bin"}, {0: 0, 1: 1, 2: 2})
    times: Dict[str, List[float]] = {name: [] for name in kinds}
    for _ in range(rounds):
        for name, tracker in kinds.items():
            table = ProcessTable(reactor, spawner, environ={}, identity=Identity.current(),
                                 tracker=tracker)
            start = time.perf_counter()
            child = table.spawn(request, "cost", None)
            times[name].append(time.perf_counter() - start)
            os.waitpid(child.pid, 0)
            time.sleep(gap)
    procs = tree.prepare("cost-sync", Limits())
    direct: List[float] = []
    for _ in range(rounds):
        pid = os.posix_spawn("/bin/true", ["true"], {}, setsid=True)
        start = time.perf_counter()
        try:
            tree.move(procs, pid)
        except OSError:
            pass
        direct.append(time.perf_counter() - start)
        os.waitpid(pid, 0)
        time.sleep(gap)
    print("ProcessTable.spawn in the reactor thread (median):")
    for name, values in times.items():
        print(f"  {name:28s} {_median_ms(values)}")
    print(f"  {'(a move written there)':28s} {_median_ms(direct)}")
    time.sleep(0.2)  # the mover thread's last writes
    cgroups.released(None)


def main(argv: Sequence[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=40)
    parser.add_argument("--gap", type=float, default=0.0)
    args = parser.parse_args(argv)
    with open("/proc/self/mountinfo") as f:
        mount = cgroup2_mount(f.read())
    tree = None
    if mount is not None and os.geteuid() == 0 and os.access(mount, os.W_OK):
        tree = CgroupTree(os.path.join(mount, f"superd-cost-{uuid.uuid4().hex[:8]}"),
                          own_pid=os.getpid()).open()
    else:
        print("no writable cgroup2 file system: cgroup figures skipped")
    with open("/proc/loadavg") as f:
        print(f"load average {f.read().split()[0]}, {args.rounds} rounds, gap {args.gap}s")
    try:
        prefixes(args.rounds, args.gap, tree)
        if tree is not None:
            trackers(args.rounds, args.gap, tree)
    finally:
        if tree is not None:
            tree.close()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
