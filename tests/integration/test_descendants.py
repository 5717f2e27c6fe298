"""
Descendants of a server that has already exited: a backgrounded ``sleep``
outlives its parent shell (reparented away from superd) and is still
stopped when the daemon stops, or when a reload drops its service.

Two trackers: process groups (``--cgroup none``: a ``sleep`` that stays in
the shell's group) and a cgroup v2 subtree (``--cgroup PATH``: also one that
left with ``setsid``; a server that forks in its first milliseconds leaves
its orphan outside the cgroup, in its process group, tracked as well).
Every test finds its ``sleep`` by a unique argument in ``/proc/*/cmdline``
and kills whatever is left of it by PID at the end.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.integration.cgroup import fresh_root, remove_tree
from tests.integration.harness import Superd, require_program, run_twistd, twistd_command

GRACE = 1.0
#: How long a stop may take beyond the grace periods on a loaded machine.
BOUND = 8.0


def holders(token: str) -> list[int]:
    """PIDs whose command line carries ``token``."""
    found = []
    needle = token.encode()
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                if needle in f.read().split(b"\0"):
                    found.append(int(entry))
        except OSError:
            continue
    return found


def wait_until(predicate: Callable[[], bool], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.05)
    return True


@pytest.fixture
def token() -> Iterator[str]:
    """A unique ``sleep`` argument; whatever still carries it is killed at the end."""
    # sleep adds up its arguments: 1000 s plus a unique fraction of a second.
    value = f"0.{uuid.uuid4().int % 10**9:09d}"
    try:
        yield value
    finally:
        for pid in holders(value):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass


def server_script(tmp_path: Path, token: str, setsid: bool = False) -> str:
    """A server that backgrounds ``sleep 1000 TOKEN`` on the client's socket
    and exits at once -- or, with ``setsid``, works for half a second and
    then leaves one behind in a session of its own (as a login server
    does), which only a cgroup can follow."""
    script = tmp_path / "spawner.sh"
    sleep = require_program("sleep")
    first = f"{sleep} 0.5\n{require_program('setsid')} " if setsid else ""
    script.write_text(f"#!/bin/sh\n{first}{sleep} 1000 {token} &\n"
                      "echo started\nexit 0\n")
    script.chmod(0o755)
    return str(script)


def service(name: str, server: str) -> str:
    return (f"service {name}\n{{\n\ttype = UNLISTED\n\tsocket_type = stream\n\twait = no\n"
            f"\tport = 0\n\tbind = 127.0.0.1\n\tuser = root\n\tserver = {server}\n"
            f"\tlog_on_success = PID EXIT\n}}\n")


def serve_once(superd: Superd, name: str, token: str, root: str | None) -> None:
    """One connection: the server answers and exits, its sleep stays (in
    the service's cgroup under ``root``, if given)."""
    with socket.create_connection(("127.0.0.1", superd.port(name)), timeout=10) as conn:
        assert conn.recv(64).startswith(b"started")
    superd.wait_for_event(lambda e: e.get("event") == "exit", timeout=10)
    assert wait_until(lambda: bool(holders(token)), 5), "the sleep never started"
    assert superd.children() == []  # its parent exited: no longer superd's child
    if root is not None:
        [pid] = holders(token)
        with open(f"/proc/{pid}/cgroup") as f:
            [v2] = [line for line in f if line.startswith("0::")]
        assert v2.strip().endswith(f"/{os.path.basename(root)}/service-{name}")


def cgroup_args(mode: str, root: str | None) -> tuple[str, ...]:
    return ("--cgroup", root if mode == "cgroup" and root else "none", "--grace", str(GRACE))


@pytest.mark.parametrize("mode, setsid", [
    ("process group", False), ("cgroup", False), ("cgroup", True)])
def test_daemon_stop_stops_descendants(
        superd_factory: Callable[..., Superd], conf_dir: Callable[..., Path],
        tmp_path: Path, token: str, mode: str, setsid: bool) -> None:
    """After the server exited, its backgrounded sleep is stopped with the daemon."""
    root = fresh_root() if mode == "cgroup" else None
    conf = conf_dir(bg=service("bg", server_script(tmp_path, token, setsid)))
    superd = superd_factory(conf, *cgroup_args(mode, root))
    try:
        tracking = superd.wait_for_event(lambda e: e.get("event") == "process_tracking")
        assert tracking["mechanism"] == mode
        serve_once(superd, "bg", token, root if setsid else None)
        assert superd.stop(timeout=GRACE + BOUND) == 0
        assert wait_until(lambda: not holders(token), 2), holders(token)
        if root is not None:
            assert not os.path.exists(root)  # superd removed the subtree it made
    finally:
        if root is not None:
            remove_tree(root)


@pytest.mark.parametrize("mode, setsid", [("process group", False), ("cgroup", True)])
def test_reload_dropping_the_service_stops_descendants(
        superd_factory: Callable[..., Superd], conf_dir: Callable[..., Path],
        tmp_path: Path, token: str, mode: str, setsid: bool) -> None:
    """A reload that drops the service stops what its servers left running."""
    root = fresh_root() if mode == "cgroup" else None
    conf = conf_dir(bg=service("bg", server_script(tmp_path, token, setsid)),
                    other=service("other", require_program("true")))
    superd = superd_factory(conf, *cgroup_args(mode, root))
    try:
        serve_once(superd, "bg", token, root if setsid else None)
        (conf / "bg").unlink()
        before = len(superd.events())
        superd.reload()
        superd.wait_for_event(lambda e: e.get("event") == "reload" and e.get("phase") == "done",
                              after=before)
        assert wait_until(lambda: not holders(token), GRACE + BOUND), holders(token)
        if root is not None:
            assert wait_until(lambda: not os.path.exists(os.path.join(root, "service-bg")), 2)
    finally:
        superd.stop()
        if root is not None:
            remove_tree(root)


def test_unusable_cgroup_path_is_refused(conf_dir: Callable[..., Path], tmp_path: Path) -> None:
    """--cgroup naming something that is not a cgroup: exit 78, and why."""
    conf = conf_dir(other=service("other", require_program("true")))
    done = run_twistd(str(conf), "--cgroup", str(tmp_path / "not-a-cgroup"))
    assert done.returncode == 78, done.stderr
    assert f"superd: --cgroup {tmp_path / 'not-a-cgroup'}: " in done.stderr


def test_delegated_cgroup_is_used_by_default(
        conf_dir: Callable[..., Path], tmp_path: Path, token: str) -> None:
    """Started inside a cgroup marked delegated (as systemd's Delegate=yes
    marks it), superd uses it without --cgroup: it moves itself into
    ``superd/``, its servers' processes go to ``service-NAME/``, and they
    are stopped with it."""
    delegated = fresh_root()
    os.mkdir(delegated)
    os.setxattr(delegated, "trusted.delegate", b"1")
    conf = conf_dir(bg=service("bg", server_script(tmp_path, token, setsid=True)))
    state = tmp_path / "state"
    # Join the cgroup first, as systemd starts a unit's process inside it.
    command = ["/bin/sh", "-c", 'echo 0 >"$0" && exec "$@"',
               os.path.join(delegated, "cgroup.procs"),
               *twistd_command(str(conf), "--grace", str(GRACE), state_dir=str(state))]
    process = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True, bufsize=1)
    superd = Superd(process, str(state), owns_state_dir=False)
    try:
        tracking = superd.wait_for_event(lambda e: e.get("event") == "process_tracking",
                                         timeout=20)
        assert (tracking["mechanism"], tracking["reason"]) == ("cgroup", "delegated")
        superd.wait_for_event(lambda e: e.get("event") == "ready", timeout=20)
        with open(f"/proc/{superd.pid}/cgroup") as f:
            assert f.read().strip().endswith(f"/{os.path.basename(delegated)}/superd")
        serve_once(superd, "bg", token, delegated)
        assert superd.stop(timeout=GRACE + BOUND) == 0
        assert wait_until(lambda: not holders(token), 2), holders(token)
        assert not os.path.exists(os.path.join(delegated, "service-bg"))
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(5)
        remove_tree(delegated)
