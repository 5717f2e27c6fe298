"""
Tests for superd.proc.helpermain: the real helper process, started as superd
starts it (``launch_helper``), driven over its socket by the test.
"""

from __future__ import annotations

import marshal
import os
import signal
import socket
import subprocess
import sys
import time
from typing import Any, Dict, Iterator, List, Optional, Tuple

import pytest

from superd.proc.helpermain import EXITED, FAILED, READY, STARTED
from superd.proc.spawnhelper import launch_helper

Reply = Tuple[int, int, int]


class Driver:
    """One helper and what it said."""

    def __init__(self) -> None:
        self.pid, self.sock = launch_helper()
        self.sock.setblocking(True)
        self.sock.settimeout(10)
        self.replies: List[Reply] = []
        self._next = 0
        (ready,) = self._read()
        assert ready[0] == READY and ready[1] == self.pid

    def _read(self) -> List[Reply]:
        data = self.sock.recv(1 << 16)
        assert data, "the helper closed its socket"
        replies: List[Reply] = [tuple(r) for r in marshal.loads(data)]  # type: ignore[misc]
        return replies

    def send(self, argv: List[str], fds: Dict[int, int], *, env: Optional[Dict[str, str]] = None,
             umask: Optional[int] = None, executable: Optional[str] = None) -> int:
        self._next += 1
        ours = sorted(set(fds.values()))
        targets = [[child for child, fd in sorted(fds.items()) if fd == o] for o in ours]
        message = marshal.dumps((self._next, executable or argv[0], tuple(argv),
                                 env if env is not None else {"PATH": "/usr/bin:/bin"},
                                 targets, None, None, umask))
        socket.send_fds(self.sock, [message], ours)
        return self._next

    def wait_for(self, kind: int, key: int) -> Reply:
        """The reply ``kind`` about request id or pid ``key``."""
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            for reply in self.replies:
                if reply[0] == kind and reply[1] == key:
                    return reply
            self.replies.extend(self._read())
        raise AssertionError(f"no reply {kind} for {key}: {self.replies}")

    def run(self, argv: List[str], fds: Dict[int, int], **kw: Any) -> Tuple[int, int]:
        """Start ``argv``; its pid and raw exit status."""
        rid = self.send(argv, fds, **kw)
        started = self.wait_for(STARTED, rid)
        return started[2], self.wait_for(EXITED, started[2])[2]

    def fds(self) -> List[str]:
        return sorted(os.listdir(f"/proc/{self.pid}/fd"))

    def close(self) -> None:
        self.sock.close()
        try:
            os.waitpid(self.pid, 0)
        except ChildProcessError:
            pass


@pytest.fixture
def helper() -> Iterator[Driver]:
    driver = Driver()
    yield driver
    if driver.sock.fileno() != -1:
        driver.close()


def output_of(helper: Driver, script: str, **kw: Any) -> Tuple[str, int]:
    """Run ``sh -c script`` with a pipe as stdout; what it wrote, raw status."""
    r, w = os.pipe()
    try:
        _, status = helper.run(["/bin/sh", "-c", script], {0: w, 1: w, 2: w}, **kw)
    finally:
        os.close(w)
    with os.fdopen(r) as out:
        return out.read(), status


def test_a_child_runs_on_the_given_descriptors_and_is_reaped(helper: Driver) -> None:
    out, status = output_of(helper, "echo $X; exit 3", env={"X": "hello"})
    assert out == "hello\n"
    assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 3


def test_the_child_is_set_up_as_superd_sets_it_up(helper: Driver) -> None:
    """Session leader, every signal at its default, none blocked, only the
    descriptors asked for, in the numbers asked for."""
    script = ("grep -E '^Sig(Ign|Blk)' /proc/self/status;"
              " ls /proc/self/fd | sort -n | tr '\\n' ' '; echo; ps -o sid=,pgid=,pid= -p $$")
    out, _ = output_of(helper, script)
    lines = out.splitlines()
    masks = dict(line.split(":\t") for line in lines[:2])
    assert int(masks["SigBlk"], 16) == 0
    # Signals Python cannot name (glibc's own) are out of anyone's reach.
    ignored = int(masks["SigIgn"], 16)
    assert not [n for n in signal.valid_signals() if ignored & (1 << (n - 1))]
    # 0-2, and the descriptor ls itself opens to list the directory.
    assert lines[2].split()[:3] == ["0", "1", "2"] and len(lines[2].split()) == 4
    sid, pgid, pid = lines[3].split()
    assert sid == pgid == pid


def test_descriptors_land_on_any_child_number(helper: Driver) -> None:
    """Two descriptors onto 1 and 4: a dup2 does not overwrite a source
    still to be read from, whatever numbers the helper received them as."""
    r1, w1 = os.pipe()
    r4, w4 = os.pipe()
    try:
        _, status = helper.run(["/bin/sh", "-c", "echo one; echo four >&4"],
                               {0: w1, 1: w1, 2: w1, 4: w4})
    finally:
        os.close(w1)
        os.close(w4)
    with os.fdopen(r1) as one, os.fdopen(r4) as four:
        assert (one.read(), four.read()) == ("one\n", "four\n")
    assert os.WEXITSTATUS(status) == 0


def test_the_umask_is_the_childs_only(helper: Driver) -> None:
    out, _ = output_of(helper, "umask", umask=0o27)
    assert out.strip() == "0027"
    out, _ = output_of(helper, "umask")
    assert out.strip() != "0027"


def test_a_program_that_cannot_run_fails_with_its_errno(helper: Driver) -> None:
    import errno

    fd = os.open(os.devnull, os.O_RDWR)
    try:
        rid = helper.send(["/nonexistent/program"], {0: fd, 1: fd, 2: fd})
    finally:
        os.close(fd)
    assert helper.wait_for(FAILED, rid)[2] == errno.ENOENT


def test_no_descriptor_or_child_stays_behind(helper: Driver) -> None:
    """300 children later the helper holds what it held, and has no child."""
    before = helper.fds()
    fd = os.open(os.devnull, os.O_RDWR)
    try:
        ids = [helper.send(["/bin/true"], {0: fd, 1: fd, 2: fd}) for _ in range(300)]
    finally:
        os.close(fd)
    pids = [helper.wait_for(STARTED, rid)[2] for rid in ids]
    for pid in pids:
        helper.wait_for(EXITED, pid)
    assert helper.fds() == before
    with open(f"/proc/{helper.pid}/task/{helper.pid}/children") as f:
        assert f.read().split() == []


def test_it_ignores_termination_signals_and_ends_with_superds_socket(
        helper: Driver) -> None:
    """SIGTERM, SIGINT and SIGHUP (a supervisor signalling superd's group)
    leave it serving; closing the socket ends it."""
    for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        os.kill(helper.pid, signum)
    out, _ = output_of(helper, "echo still")
    assert out == "still\n"
    helper.sock.close()
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        pid, status = os.waitpid(helper.pid, os.WNOHANG)
        if pid:
            assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0
            return
        time.sleep(0.01)
    raise AssertionError("the helper did not exit on EOF")


def test_the_helper_loads_no_twisted() -> None:
    """Its imports stay small: no Twisted, no attrs, no credentials code
    until a request needs it."""
    code = ("import sys; from superd.proc import helpermain; "
            "print(' '.join(sorted(m for m in sys.modules if m.split('.')[0] in "
            "('twisted', 'attrs', 'zope', 'ctypes') or m == 'superd.proc.credentials')))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=60, check=True)
    assert done.stdout.strip() == ""
