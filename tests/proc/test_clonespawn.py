"""
Tests for superd.proc.clonespawn and the compiled superd.proc._clonespawn:
children start exactly as os.posix_spawn starts them in PosixSpawner
(descriptors, environment, session, signals, ids), the call returns before
the exec, and settle() reports each exec -- or the errno that stopped it --
once.
"""

from __future__ import annotations

import errno
import os
import platform
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from superd.proc.clonespawn import MAX_FDS, CloneSpawn
from superd.proc.credentials import Identity, SpawningThread
from superd.proc.table import prepare_process
from tests.integration.harness import REQUIRE_ALL
from tests.integration.test_external_basic import PROBE
from tests.proc.test_libcspawn import check_plain_child, check_switched_child

SUPPORTED = sys.platform.startswith("linux") and platform.machine() == "x86_64"


def loaded() -> CloneSpawn:
    spawn = CloneSpawn.load()
    if spawn is None:
        message = "superd.proc._clonespawn is not built here"
        if REQUIRE_ALL and SUPPORTED:
            pytest.fail(f"{message} (SUPERD_REQUIRE_ALL=1)")
        pytest.skip(message)
    return spawn


def settled(spawn: CloneSpawn, pid: int, timeout: float = 10) -> int:
    """The errno settle() reports for ``pid`` (0: it executed)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for found, err in spawn.settle():
            if found == pid:
                return err
        time.sleep(0.001)
    raise AssertionError(f"child {pid} never settled")


def run(spawn: CloneSpawn, executable: str, argv: tuple[str, ...], env: dict[str, str],
        **kwargs: bool) -> bytes:
    """The child's output on its fds 0-2 (a socket), once it has exited 0."""
    ours, theirs = socket.socketpair()
    with ours, theirs:
        pid = spawn(executable, argv, env, {0: theirs.fileno(), 1: theirs.fileno(),
                                            2: theirs.fileno()}, **kwargs)
        theirs.close()
        ours.settimeout(10)
        chunks = []
        while chunk := ours.recv(65536):
            chunks.append(chunk)
    assert settled(spawn, pid) == 0
    assert os.waitpid(pid, 0)[1] == 0
    return b"".join(chunks)


def spawn_report(spawn: CloneSpawn, directory: Path, **kwargs: bool) -> dict[str, str]:
    """What a child running the external servers' probe reports."""
    probe = directory / "probe.py"
    probe.write_text(PROBE)
    # LC_ALL: no locale coercion adding LC_CTYPE to the child's environment.
    out = run(spawn, sys.executable, ("python", "-I", "-S", str(probe), "one", "two"),
              {"X": "y", "LC_ALL": "C.UTF-8"}, **kwargs)
    return dict(line.split("=", 1) for line in out.decode().splitlines() if "=" in line)


def test_built_where_supported() -> None:
    """CI (x86_64 Linux, with a compiler and Python's headers) builds the
    module: its absence would silently put superd back on posix_spawn."""
    if not SUPPORTED:
        assert CloneSpawn.load() is None
        return
    loaded()


def test_child_gets_its_descriptors_environment_and_session(tmp_path: Path) -> None:
    """Only fds 0-2 (the socket: everything else superd holds is
    close-on-exec), exactly the given environment and argv, a session of its
    own."""
    prepare_process()
    check_plain_child(spawn_report(loaded(), tmp_path))


def test_child_signals_are_at_their_defaults_and_unblocked() -> None:
    """Python ignores SIGPIPE and has handlers of its own: the program starts
    with every standard signal at its default disposition and none blocked,
    although the parent blocks them all while it clones."""
    assert signal.getsignal(signal.SIGPIPE) == signal.SIG_IGN
    status = run(loaded(), "/bin/cat", ("cat", "/proc/self/status"), {}).decode()
    fields = dict(line.split(":", 1) for line in status.splitlines())
    assert int(fields["SigBlk"], 16) == 0
    assert int(fields["SigIgn"], 16) & 0x7FFFFFFF == 0  # signals 1-31
    assert int(fields["SigCgt"], 16) == 0
    # The parent's own mask is back as it was.
    assert signal.pthread_sigmask(signal.SIG_BLOCK, []) == set()


def test_returns_before_the_exec_and_settles_once() -> None:
    """The pid comes back while the child may still be on its way to exec;
    settle() then reports it exactly once."""
    spawn = loaded()
    before = spawn.pending
    pid = spawn("/bin/true", ("true",), {}, {0: 0, 1: 1, 2: 2})
    assert spawn.pending == before + 1  # counted until settle() reports it
    assert settled(spawn, pid) == 0
    assert all(found != pid for found, _ in spawn.settle())
    assert os.waitpid(pid, 0)[1] == 0
    assert spawn.pending == 0


def test_exec_failure_is_settled_with_its_errno_and_exit_127() -> None:
    """A missing program: settle() says ENOENT, and the child exits 127."""
    spawn = loaded()
    pid = spawn("/nonexistent/server", ("server",), {}, {0: 0, 1: 1, 2: 2})
    assert settled(spawn, pid) == errno.ENOENT
    _, status = os.waitpid(pid, 0)
    assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 127


def test_a_bad_descriptor_is_settled_as_a_failure() -> None:
    """A descriptor that is not open cannot become the child's: EBADF."""
    spawn = loaded()
    r, w = os.pipe()
    os.close(r)
    os.close(w)
    pid = spawn("/bin/true", ("true",), {}, {0: r, 1: 1, 2: 2})
    assert settled(spawn, pid) == errno.EBADF
    assert os.WEXITSTATUS(os.waitpid(pid, 0)[1]) == 127


#: Run in a fresh interpreter, whose few descriptors are all below MAX_FDS
#: (a test process may hold every one of them).
_IN_PLACE = """
import os, socket, sys
from superd.proc.clonespawn import CloneSpawn
spawn = CloneSpawn.load()
ours, theirs = socket.socketpair()
number = theirs.fileno()
assert number < 16 and not os.get_inheritable(number)
pid = spawn(sys.executable, ("python", "-I", "-S", "-c",
                             f"import os; os.write({number}, b'here')"),
            {}, {0: 0, 1: 1, 2: 2, number: number})
theirs.close()
ours.settimeout(10)
data = ours.recv(10)
os.waitpid(pid, 0)
sys.stdout.write(data.decode())
"""


def test_descriptor_already_in_place_is_kept_open() -> None:
    """A source that is already the child's number (close-on-exec, as every
    descriptor superd holds) is made inheritable rather than duplicated: the
    program can write to it by that number."""
    loaded()
    result = subprocess.run([sys.executable, "-c", _IN_PLACE], capture_output=True,
                            text=True, timeout=30, check=False)
    assert result.returncode == 0, result.stderr
    assert result.stdout == "here"


def test_many_children_reuse_blocks_and_leak_nothing() -> None:
    """Hundreds of children, each with different arguments and environment:
    each gets its own, every one settles, and no descriptor is left."""
    spawn = loaded()
    before = len(os.listdir("/proc/self/fd"))
    pids = {}
    for i in range(300):
        ours, theirs = socket.socketpair()
        pid = spawn("/bin/sh", ("sh", "-c", f'echo {i} "$N"'), {"N": str(i * 7)},
                    {0: theirs.fileno(), 1: theirs.fileno(), 2: theirs.fileno()})
        theirs.close()
        pids[pid] = (i, ours)
    results = {}
    deadline = time.monotonic() + 30
    while len(results) < len(pids) and time.monotonic() < deadline:
        results.update(spawn.settle())
        time.sleep(0.001)
    assert set(results) == set(pids) and set(results.values()) == {0}
    for pid, (i, ours) in pids.items():
        with ours:
            ours.settimeout(10)
            assert ours.recv(100) == f"{i} {i * 7}\n".encode()
        assert os.waitpid(pid, 0)[1] == 0
    assert spawn.pending == 0
    assert len(os.listdir("/proc/self/fd")) == before


def test_large_request_gets_a_block_of_its_own() -> None:
    """Arguments and environment larger than a block still arrive whole."""
    spawn = loaded()
    big = "v" * 100_000  # one string may be at most 128 KiB
    out = run(spawn, "/bin/sh", ("sh", "-c", 'printf %s "$BIG" | wc -c'), {"BIG": big})
    assert out.strip() == b"100000"


@pytest.mark.parametrize("argv,env,fds,error", [
    (("x\0y",), {}, {0: 0}, ValueError),
    (("x",), {"A": "b\0c"}, {0: 0}, ValueError),
])
def test_bad_strings_are_refused_before_any_child(argv: tuple[str, ...], env: dict[str, str],
                                                  fds: dict[int, int],
                                                  error: type[Exception]) -> None:
    spawn = loaded()
    with pytest.raises(error):
        spawn("/bin/true", argv, env, fds)
    with pytest.raises(ChildProcessError):
        os.waitpid(-1, os.WNOHANG)


def test_module_refuses_what_it_cannot_set_up() -> None:
    """Descriptor maps beyond MAX_FDS and an empty argv: refused, no child."""
    spawn = loaded()
    assert not CloneSpawn.takes({0: 3, MAX_FDS: 3}) and CloneSpawn.takes({0: 3, 2: 3})
    module = spawn._module
    with pytest.raises(ValueError):
        module.spawn(b"/bin/true", (b"true",), (), tuple(range(MAX_FDS + 1)), False)
    with pytest.raises(ValueError):
        module.spawn(b"/bin/true", (), (), (0, 1, 2), False)
    with pytest.raises(ChildProcessError):
        os.waitpid(-1, os.WNOHANG)


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root")
def test_resetids_makes_the_threads_real_ids_effective() -> None:
    """As root, the spawning thread holds the user's ids as its real ids
    (superd.proc.credentials); resetids makes them the child's effective
    ones: all four ids the user's, no capability left, and the parent keeps
    its own."""
    thread = SpawningThread.for_this_machine(Identity.current())
    if not thread.can_switch or not thread.probe():
        pytest.skip("per-thread credentials unavailable here")
    spawn = loaded()
    check_switched_child(
        lambda: run(spawn, "/bin/cat", ("cat", "/proc/self/status"), {}, resetids=True))
