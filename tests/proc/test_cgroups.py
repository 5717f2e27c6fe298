"""
Tests for superd.proc.cgroups: finding the subtree (pure, from /proc text),
the service cgroups and their limits on a directory standing in for the
cgroup file system, and -- where this machine has a writable cgroup2 file
system -- a real child moving itself in before it forks.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
import uuid
from pathlib import Path
from typing import Dict, List, Tuple

import pytest

from superd.proc import cgroups
from superd.proc.cgroups import (
    CgroupError,
    CgroupTree,
    Limits,
    cgroup2_mount,
    detect,
    join_prefix,
    own_cgroup,
)

REAL_WRITE = cgroups._write
HYBRID = ("24 23 0:21 / /sys/fs/cgroup rw - tmpfs tmpfs rw\n"
          "41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw\n")
PURE = "30 23 0:26 / /sys/fs/cgroup rw,nosuid - cgroup2 cgroup2 rw,nsdelegate\n"


def reader(files: Dict[str, str]):  # type: ignore[no-untyped-def]
    def read(path: str) -> str:
        return files[path]
    return read


def no_xattr(path: str, name: str) -> bytes:
    raise OSError(61, "No data available")


def test_mount_and_own_cgroup() -> None:
    assert cgroup2_mount(HYBRID) == "/sys/fs/cgroup/unified"
    assert cgroup2_mount(PURE) == "/sys/fs/cgroup"
    assert cgroup2_mount("24 23 0:21 / /sys/fs/cgroup rw - tmpfs tmpfs rw\n") is None
    assert own_cgroup("4:memory:/x\n0::/system.slice/superd.service\n") == \
        "/system.slice/superd.service"
    assert own_cgroup("4:memory:/x\n") is None


def test_detect_auto_needs_delegation() -> None:
    """auto uses superd's own cgroup only when it is marked delegated."""
    files = {"/proc/self/mountinfo": PURE,
             "/proc/self/cgroup": "0::/system.slice/superd.service\n"}
    found = detect("auto", read=reader(files), getxattr=no_xattr)
    assert found.root is None and "Delegate=yes" in found.reason

    def delegated(path: str, name: str) -> bytes:
        assert path == "/sys/fs/cgroup/system.slice/superd.service"
        if name == "trusted.delegate":
            return b"1"
        raise OSError(61, "No data available")

    found = detect("auto", read=reader(files), getxattr=delegated)
    assert found.root == "/sys/fs/cgroup/system.slice/superd.service" and found.move_self


def test_detect_explicit_path() -> None:
    files = {"/proc/self/mountinfo": HYBRID, "/proc/self/cgroup": "0::/\n"}
    found = detect("/sys/fs/cgroup/unified/superd", read=reader(files), getxattr=no_xattr)
    assert found.root == "/sys/fs/cgroup/unified/superd" and not found.move_self
    with pytest.raises(CgroupError, match="not a directory under the cgroup2 mount"):
        detect("/tmp/superd", read=reader(files), getxattr=no_xattr)
    assert detect("none", read=reader(files), getxattr=no_xattr).root is None
    with pytest.raises(CgroupError, match="no cgroup2"):
        detect("/sys/fs/cgroup/x", read=reader({"/proc/self/mountinfo": "",
                                                "/proc/self/cgroup": ""}),
               getxattr=no_xattr)


@pytest.fixture(autouse=True)
def plain_files(monkeypatch: pytest.MonkeyPatch) -> None:
    """On a plain directory writing an interface file creates it."""
    monkeypatch.setattr(cgroups, "_write", lambda path, text: Path(path).write_text(text))


def fake_tree(tmp_path: Path, controllers: str = "memory pids hugetlb",
              kill: List[Tuple[int, int]] | None = None) -> CgroupTree:
    """A tree on a plain directory: interface files are ordinary files."""
    root = tmp_path / "cg"
    root.mkdir(parents=True)
    (root / "cgroup.controllers").write_text(controllers + "\n")
    (root / "cgroup.subtree_control").write_text("")
    sent = kill if kill is not None else []
    tree = CgroupTree(str(root), own_pid=os.getpid(), proc=str(tmp_path / "proc"),
                      kill=lambda pid, sig: sent.append((pid, sig)))
    return tree.open()


def test_limits_need_their_controllers(tmp_path: Path) -> None:
    """Only hugetlb here (as on a hybrid host): memory_max and tasks_max are
    refused with the reason; with both controllers they are written."""
    tree = fake_tree(tmp_path, controllers="hugetlb")
    problem = tree.limits_problem(Limits(memory_max=1 << 20, tasks_max=8))
    assert problem is not None
    assert "memory and pids" in problem and "cgroup.controllers: hugetlb" in problem
    assert tree.limits_problem(Limits()) is None

    tree = fake_tree(tmp_path / "two")
    assert tree.controllers == frozenset({"memory", "pids"})
    procs = tree.prepare("web", Limits(memory_max=1 << 20))
    directory = Path(procs).parent
    assert directory.name == "service-web"
    assert (directory / "memory.max").read_text() == str(1 << 20)
    assert (directory / "pids.max").read_text() == "max"


def test_directory_names_cannot_collide(tmp_path: Path) -> None:
    tree = fake_tree(tmp_path)
    assert tree.directory("a/b") != tree.directory("a_b")
    assert os.path.dirname(tree.directory("../x")) == tree.root


def test_signal_and_kill(tmp_path: Path) -> None:
    """SIGTERM goes to each process listed; SIGKILL through cgroup.kill."""
    sent: List[Tuple[int, int]] = []
    tree = fake_tree(tmp_path, kill=sent)
    directory = Path(tree.prepare("web", Limits())).parent
    (directory / "cgroup.procs").write_text("101\n102\n")
    (directory / "cgroup.events").write_text("populated 1\nfrozen 0\n")
    (directory / "cgroup.kill").write_text("")
    tree.signal("web", signal.SIGTERM)
    assert sent == [(101, signal.SIGTERM), (102, signal.SIGTERM)]
    tree.signal("web", signal.SIGKILL)
    assert (directory / "cgroup.kill").read_text() == "1"
    assert sent == [(101, signal.SIGTERM), (102, signal.SIGTERM)]
    assert tree.populated("web")


def test_move_sweeps_what_the_child_started(tmp_path: Path,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    """After the child, its children (and theirs) are moved too."""
    tree = fake_tree(tmp_path)
    for pid, children in ((10, "11 12 "), (11, "13"), (12, ""), (13, "")):
        task = tmp_path / "proc" / str(pid) / "task" / str(pid)
        task.mkdir(parents=True)
        (task / "children").write_text(children)
    procs = tree.prepare("web", Limits())
    written: List[Tuple[str, str]] = []
    monkeypatch.setattr(cgroups, "_write", lambda path, text: written.append((path, text)))
    tree.move(procs, 10)
    assert written == [(procs, "10"), (procs, "11"), (procs, "12"), (procs, "13")]


def cgroup2() -> str:
    mount = cgroup2_mount(Path("/proc/self/mountinfo").read_text())
    if mount is None or os.geteuid() != 0 or not os.access(mount, os.W_OK):
        pytest.skip("needs root and a writable cgroup2 file system")
    return mount


def test_join_prefix_moves_the_child_before_it_forks(tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """A real shell that backgrounds a sleep at once and exits: with the
    prefix both are in the cgroup, the orphan included."""
    monkeypatch.setattr(cgroups, "_write", REAL_WRITE)
    root = os.path.join(cgroup2(), f"superd-unit-{uuid.uuid4().hex[:12]}")
    tree = CgroupTree(root, own_pid=os.getpid()).open()
    token = f"0.{uuid.uuid4().int % 10**9:09d}"
    try:
        procs = tree.prepare("fast", Limits())
        argv = [*join_prefix(procs), "/bin/sh", "-c", f"sleep 1000 {token} & exit 0"]
        subprocess.run(argv, check=True, timeout=10)
        deadline = time.monotonic() + 5
        while not tree.pids("fast") and time.monotonic() < deadline:
            time.sleep(0.01)
        [pid] = tree.pids("fast")
        assert token.encode() in Path(f"/proc/{pid}/cmdline").read_bytes()
        tree.signal("fast", signal.SIGKILL)
        deadline = time.monotonic() + 5
        while tree.populated("fast") and time.monotonic() < deadline:
            time.sleep(0.01)
        assert not tree.populated("fast")
    finally:
        for pid in tree.pids("fast"):
            os.kill(pid, signal.SIGKILL)
        time.sleep(0.1)
        tree.close()
    assert not os.path.exists(root)
