"""Process helpers the new figures rely on: JSON event logs and thread affinity."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from benchlib import procs


def test_json_events_skips_lines_that_are_not_json_objects(tmp_path: Path) -> None:
    """twistd's own lines and a torn last line are skipped; events keep their fields."""
    log = tmp_path / "superd.log"
    event = {"time": "1970-01-01T00:00:01.500000Z", "event": "ban", "action": "add",
             "peer_host": "127.1.0.1"}
    log.write_text(f'twistd starting\n{json.dumps(event)}\n[1, 2]\n{{"event": "ba')
    assert procs.json_events(str(log)) == [event]


def test_unpin_then_pin_changes_every_thread_of_a_process(tmp_path: Path) -> None:
    """A process started on one CPU may use every CPU after unpin, and one again after."""
    cpus = sorted(os.sched_getaffinity(0))
    if len(cpus) < 2 or shutil.which("taskset") is None:
        pytest.skip("needs taskset and two CPUs")
    code = "import threading, time; threading.Thread(target=time.sleep, args=(30,)).start()"
    argv = ["taskset", "-c", str(cpus[0]), sys.executable, "-c", f"{code}; time.sleep(30)"]
    server = procs.start("sleeper", argv, str(tmp_path / "log"))
    try:
        tids = _wait_threads(server.pid, 2)
        assert all(os.sched_getaffinity(t) == {cpus[0]} for t in tids)
        procs.unpin(server.pid)
        assert all(os.sched_getaffinity(t) == set(cpus) for t in tids)
        procs.set_affinity(server.pid, {cpus[1]})
        assert all(os.sched_getaffinity(t) == {cpus[1]} for t in tids)
    finally:
        server.stop()


def _wait_threads(pid: int, count: int) -> list[int]:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        tids = [int(t) for t in os.listdir(f"/proc/{pid}/task")]
        if len(tids) >= count:
            return tids
        time.sleep(0.02)
    raise AssertionError(f"pid {pid} never had {count} threads")


def test_unreaped_children_counts_zombies_until_they_are_reaped() -> None:
    """An ended child not yet waited for counts; once reaped it no longer does
    (``wait_reaped`` waits on exactly this before the bench reads CPU)."""
    child = subprocess.Popen(["/bin/true"])
    deadline = time.monotonic() + 5
    while procs.unreaped_children(os.getpid()) == 0 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert procs.unreaped_children(os.getpid()) >= 1
    child.wait()
    procs.wait_reaped(os.getpid(), timeout=0.2)
    assert procs.unreaped_children(os.getpid()) == 0


def test_nofile_limits_raise_the_soft_limit_never_beyond_the_hard_one() -> None:
    """Soft goes up to what is wanted within the hard limit; nothing is lowered."""
    inf = procs.resource.RLIM_INFINITY
    assert procs.nofile_limits(1024, 4096, 12000, False) == (4096, 4096)
    assert procs.nofile_limits(1024, 65536, 12000, False) == (12000, 65536)
    assert procs.nofile_limits(20000, 65536, 12000, False) == (20000, 65536)
    assert procs.nofile_limits(1024, inf, 12000, False) == (12000, inf)
    assert procs.nofile_limits(inf, inf, 12000, False) == (inf, inf)


def test_nofile_limits_raise_the_hard_limit_only_when_allowed_and_only_to_the_need() -> None:
    assert procs.nofile_limits(1024, 4096, 12000, True) == (12000, 12000)
    assert procs.nofile_limits(1024, 4096, 12000, False) == (4096, 4096)


def test_udp_ports_and_listening_ports_see_their_own_sockets() -> None:
    """A bound UDP socket shows in udp_ports; a listening TCP one in listening_ports,
    read through this process's PID as well as the host view."""
    with (
        socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp,
        socket.socket(socket.AF_INET, socket.SOCK_STREAM) as tcp,
    ):
        udp.bind(("127.0.0.1", 0))
        tcp.bind(("127.0.0.1", 0))
        tcp.listen(1)
        uport, tport = udp.getsockname()[1], tcp.getsockname()[1]
        assert uport in procs.udp_ports() and uport in procs.udp_ports(os.getpid())
        assert tport in procs.listening_ports() and tport in procs.listening_ports(os.getpid())
        assert uport not in procs.listening_ports() or uport == tport
    assert tport not in procs.listening_ports()


def test_start_timed_reports_a_server_that_never_listens(tmp_path: Path) -> None:
    """Still running after the timeout: no time, a reason, and the caller stops it."""
    argv = [sys.executable, "-c", "import time; time.sleep(30)"]
    with socket.socket() as held:  # bound, never listening: nothing else can listen there
        held.bind(("127.0.0.1", 0))
        port = held.getsockname()[1]
        server, secs, why = procs.start_timed("sleeper", argv, str(tmp_path / "log"), [port], 0.3)
        try:
            assert secs is None and why == "not listening after 0.3 s" and server.alive()
        finally:
            server.stop()
