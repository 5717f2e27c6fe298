"""
Tests for superd.proc.libcspawn: glibc's posix_spawn through ctypes starts
children exactly as os.posix_spawn does in PosixSpawner (descriptors,
environment, session, signals, exec errors), and releases the GIL meanwhile.
"""

from __future__ import annotations

import ctypes
import errno
import os
import signal
import socket
import sys
import threading
import time
from pathlib import Path
from typing import Callable

import pytest

from superd.proc.credentials import CredentialPlan, Identity, SpawningThread
from superd.proc.libcspawn import LibcSpawn
from superd.proc.table import prepare_process
from tests.integration.test_external_basic import PROBE

pytestmark = pytest.mark.skipif(LibcSpawn.load() is None, reason="glibc on Linux only")

def run(spawn: LibcSpawn, executable: str, argv: tuple[str, ...], env: dict[str, str],
        **kwargs: object) -> bytes:
    """The child's output on its fds 0-2 (a socket), once it has exited 0."""
    ours, theirs = socket.socketpair()
    with ours, theirs:
        pid = spawn(executable, argv, env, {0: theirs.fileno(), 1: theirs.fileno(),
                                            2: theirs.fileno()}, **kwargs)  # type: ignore[arg-type]
        theirs.close()
        ours.settimeout(10)
        chunks = []
        while chunk := ours.recv(65536):
            chunks.append(chunk)
    assert os.waitpid(pid, 0)[1] == 0
    return b"".join(chunks)


def spawn_report(spawn: LibcSpawn, directory: Path) -> dict[str, str]:
    """What a child running the external servers' probe reports."""
    probe = directory / "probe.py"
    probe.write_text(PROBE)
    # LC_ALL: no locale coercion adding LC_CTYPE to the child's environment.
    out = run(spawn, sys.executable, ("python", "-I", "-S", str(probe), "one", "two"),
              {"X": "y", "LC_ALL": "C.UTF-8"})
    return dict(line.split("=", 1) for line in out.decode().splitlines() if "=" in line)


def loaded() -> LibcSpawn:
    spawn = LibcSpawn.load()
    assert spawn is not None
    return spawn


def test_child_gets_its_descriptors_environment_and_session(tmp_path: Path) -> None:
    """Only fds 0-2 (the socket: everything else superd holds is
    close-on-exec), exactly the given environment and argv, a session of its
    own."""
    prepare_process()
    check_plain_child(spawn_report(loaded(), tmp_path))


def check_plain_child(facts: dict[str, str]) -> None:
    """What the probe started by ``spawn_report`` must have seen."""
    assert facts["argv"].endswith(" one two")
    environment = set(facts) - {"argv", "ids", "umask", "nice", "fds", "sockets",
                                "session_leader"}
    assert environment == {"X", "LC_ALL"} and facts["X"] == "y"
    assert facts["fds"] == "[0, 1, 2]" and facts["sockets"] == "1"
    assert facts["session_leader"] == "True"


def test_child_signals_are_at_their_defaults_and_unblocked() -> None:
    """Python ignores SIGPIPE (and a thread may block signals): the program
    starts with every standard signal at its default disposition and none
    blocked (cat reads its own status without touching either)."""
    assert signal.getsignal(signal.SIGPIPE) == signal.SIG_IGN
    status = run(loaded(), "/bin/cat", ("cat", "/proc/self/status"), {}).decode()
    fields = dict(line.split(":", 1) for line in status.splitlines())
    assert int(fields["SigBlk"], 16) == 0
    assert int(fields["SigIgn"], 16) & 0x7FFFFFFF == 0  # signals 1-31


def test_exec_failure_is_the_errno_and_leaves_no_child() -> None:
    """A missing program: OSError(ENOENT), and glibc has reaped the child."""
    spawn = loaded()
    with pytest.raises(OSError) as caught:
        spawn("/nonexistent/server", ("server",), {}, {0: 0, 1: 1, 2: 2})
    assert caught.value.errno == errno.ENOENT
    with pytest.raises(ChildProcessError):
        os.waitpid(-1, os.WNOHANG)


def test_repeated_requests_reuse_nothing_wrong() -> None:
    """Prepared argument vectors and file actions are reused per thread:
    different descriptors and arguments still reach the right children."""
    spawn = loaded()
    for text in ("a", "b", "a"):
        ours, theirs = socket.socketpair()
        with ours, theirs:
            pid = spawn("/bin/sh", ("sh", "-c", f"echo {text}"), {},
                        {0: theirs.fileno(), 1: theirs.fileno(), 2: theirs.fileno()})
            theirs.close()
            ours.settimeout(10)
            assert ours.recv(10) == f"{text}\n".encode()
        os.waitpid(pid, 0)


def test_the_gil_is_released_while_glibc_waits() -> None:
    """A plain CDLL function (not PyDLL): ctypes releases the GIL around the
    call, so another Python thread runs while a child is being started."""
    spawn = loaded()
    assert not spawn._spawn._flags_ & ctypes._FUNCFLAG_PYTHONAPI  # type: ignore[attr-defined]
    ran: list[float] = []
    windows: list[tuple[float, float]] = []
    stop = threading.Event()

    def spin() -> None:
        while not stop.is_set():
            ran.append(time.perf_counter())
            time.sleep(0)

    old = sys.getswitchinterval()
    sys.setswitchinterval(10.0)  # the spinner runs only when the GIL is free
    spinner = threading.Thread(target=spin)
    spinner.start()
    try:
        for _ in range(200):
            start = time.perf_counter()
            pid = spawn("/bin/true", ("true",), {}, {0: 0, 1: 1, 2: 2})
            windows.append((start, time.perf_counter()))
            os.waitpid(pid, 0)
            if any(a < t < b for a, b in windows[-1:] for t in ran[-50:]):
                break
    finally:
        stop.set()
        spinner.join()
        sys.setswitchinterval(old)
    assert any(a < t < b for a, b in windows for t in ran)


@pytest.mark.skipif(os.geteuid() != 0 or not SpawningThread.for_this_machine(
    Identity.current()).can_switch, reason="needs root and the per-thread switch")
def test_resetids_makes_the_threads_real_ids_the_childs() -> None:
    """With the thread's real ids switched (superd.proc.credentials), the
    child runs as that user only: all three ids, the groups given, and no
    capability left after exec."""
    spawn = loaded()
    check_switched_child(
        lambda: run(spawn, "/bin/cat", ("cat", "/proc/self/status"), {}, resetids=True))


def check_switched_child(status: Callable[[], bytes]) -> None:
    """``status()``, called on a thread holding nobody's ids as its real ids,
    gives a child's /proc/self/status: it ran as nobody alone."""
    thread = SpawningThread.for_this_machine(Identity.current())
    out: list[bytes] = []

    def start() -> int:
        out.append(status())
        return 0

    thread.run_as(CredentialPlan(65534, 65534, ()), None, start)
    lines = out[0].decode().splitlines()
    fields = {k: v.split() for k, v in (line.split(":", 1) for line in lines)}
    assert fields["Uid"] == ["65534"] * 4 and fields["Gid"] == ["65534"] * 4
    assert fields["Groups"] == []
    assert int(fields["CapPrm"][0], 16) == 0 and int(fields["CapEff"][0], 16) == 0
    assert os.getresuid() == (0, 0, 0)
