"""
Resource exhaustion around spawning: a service user at its process limit
(spawn fails with EAGAIN: FAIL fork, the client is closed, superd keeps
serving), and per-service rlimits applied race-free before the server runs.
"""

from __future__ import annotations

import os
import pwd
import resource
import socket
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.integration.external import (
    read_all,
    script,
    service_block,
    wait_until,
)
from tests.integration.harness import Superd

Factory = Callable[..., Superd]


def tasks_of(uid: int) -> int:
    """Threads of every process whose real uid is ``uid`` (what NPROC counts)."""
    count = 0
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/status") as f:
                fields = dict(line.split(":", 1) for line in f if ":" in line)
        except OSError:
            continue
        if int(fields["Uid"].split()[0]) == uid:
            count += int(fields["Threads"])
    return count


def lonely_uid() -> int:
    """A numeric user with no account and no processes, chosen per test run:
    two runs sharing one uid (a developer's and a clone's) would count each
    other's children against the limit."""
    start = 54321 + os.getpid() % 4096
    for uid in range(start, start + 256):
        try:
            pwd.getpwuid(uid)
        except KeyError:
            if tasks_of(uid) == 0:
                return uid
    raise AssertionError(f"no free uid from {start}")


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to run children as another user")
def test_process_limit_gives_fail_fork(superd_factory: Factory,
                                       conf_dir: Callable[..., Path],
                                       world_dir: Path) -> None:
    """With RLIMIT_NPROC reached for the service user, the spawn fails with
    EAGAIN: FAIL fork is logged, the client sees the connection close, no
    EXIT is logged, and once a child ends the service works again."""
    sleeper = script(world_dir, "sleeper", "echo up\nexec sleep 30\n")
    # A uid of its own: nothing else on the machine counts against its limit.
    uid = lonely_uid()
    conf = conf_dir(s=service_block("s", sleeper, user=str(uid)))
    # 3: two children, plus superd's spawning thread, which counts as one
    # of the user's tasks while it has the user's credentials (credentials.py).
    allowed = 3
    soft, hard = resource.getrlimit(resource.RLIMIT_NPROC)
    # Inherited by superd (root ignores it; its children as that user do not).
    resource.setrlimit(resource.RLIMIT_NPROC, (allowed, hard))
    try:
        superd = superd_factory(conf)
    finally:
        resource.setrlimit(resource.RLIMIT_NPROC, (soft, hard))
    superd.allow_errors = True  # the failed spawn is logged at error level
    port = superd.port("s")
    held = [socket.create_connection(("127.0.0.1", port), timeout=10) for _ in range(2)]
    for sock in held:
        assert sock.recv(16) == b"up\n"
    with socket.create_connection(("127.0.0.1", port), timeout=10) as extra:
        assert read_all(extra) == b""
    fail = superd.wait_for_event(lambda e: e.get("event") == "refuse")
    assert fail["reason"] == "fork" and "FAIL: s fork from=127.0.0.1" in superd.xinetd_lines()
    assert not [e for e in superd.events() if e.get("event") == "exit"]
    held.pop().close()
    os.kill(min(superd.children()), 15)
    superd.wait_for_event(lambda e: e.get("event") == "exit")
    with socket.create_connection(("127.0.0.1", port), timeout=10) as again:
        assert again.recv(16) == b"up\n"
    for sock in held:
        sock.close()


def test_rlimits_apply_before_the_server_runs(superd_factory: Factory,
                                              conf_dir: Callable[..., Path],
                                              world_dir: Path) -> None:
    """rlimit_files/rlimit_cpu/rlimit_as reach the server (soft = hard, as
    xinetd) and, without them, NOFILE is soft = hard (xinetd's default)."""
    show = script(world_dir, "show", "ulimit -Sn; ulimit -Hn; ulimit -St; ulimit -Sv\n")
    conf = conf_dir(
        limited=service_block("limited", show, extra=(
            "rlimit_files = 64\nrlimit_cpu = 30\nrlimit_as = 512M")),
        plain=service_block("plain", show))
    superd = superd_factory(conf)
    with socket.create_connection(("127.0.0.1", superd.port("limited")), timeout=10) as s:
        assert read_all(s).split() == [b"64", b"64", b"30", str(512 * 1024).encode()]
    with socket.create_connection(("127.0.0.1", superd.port("plain")), timeout=10) as s:
        soft, hard = read_all(s).split()[:2]
    assert soft == hard
    assert wait_until(lambda: superd.children() == [])


def test_children_beyond_descriptor_limit(superd_factory: Factory,
                                          conf_dir: Callable[..., Path],
                                          world_dir: Path) -> None:
    """With superd's descriptor limit cut to a few above its idle count,
    more children than that run at once (a handed-off socket costs superd
    nothing; reaping falls back from pidfds to SIGCHLD), all are reaped and
    logged, and the descriptor count returns to idle."""
    sleeper = script(world_dir, "sleeper", "echo up\nexec sleep 30\n")
    superd = superd_factory(conf_dir(s=service_block("s", sleeper)))
    idle = superd.idle_fds()
    limit = sum(idle.values()) + 12
    resource.prlimit(superd.pid, resource.RLIMIT_NOFILE, (limit, limit))
    port = superd.port("s")
    held = [socket.create_connection(("127.0.0.1", port), timeout=10) for _ in range(40)]
    for sock in held:
        assert sock.recv(16) == b"up\n"
    assert wait_until(lambda: len(superd.children()) == 40)
    for pid in superd.children():
        os.kill(pid, 15)
    assert wait_until(lambda: len([e for e in superd.events()
                                   if e.get("event") == "exit"]) == 40, timeout=20)
    assert not superd.fds_beyond(idle)
    for sock in held:
        sock.close()
    with socket.create_connection(("127.0.0.1", port), timeout=10) as again:
        assert again.recv(16) == b"up\n"


def test_instances_per_source_and_limit_count_children(superd_factory: Factory,
                                                       conf_dir: Callable[..., Path],
                                                       world_dir: Path) -> None:
    """instances, per_source and --limit count running children: a slot is
    taken at spawn and given back only when the child is reaped (not when
    superd drops its copy of the socket at hand-off)."""
    sleeper = script(world_dir, "sleeper", "echo up\nexec sleep 30\n")
    conf = conf_dir(
        inst=service_block("inst", sleeper, extra="instances = 2"),
        src=service_block("src", sleeper, extra="per_source = 1"),
        other=service_block("other", sleeper))
    superd = superd_factory(conf, "--limit", "4")

    def open_(service_id: str, source: str = "127.0.0.1") -> socket.socket:
        sock = socket.create_connection(("127.0.0.1", superd.port(service_id)),
                                        timeout=10, source_address=(source, 0))
        return sock

    inst = [open_("inst") for _ in range(2)]
    for sock in inst:
        assert sock.recv(16) == b"up\n"
    with open_("inst") as third:
        assert read_all(third) == b""
    superd.wait_for_event(lambda e: e.get("reason") == "service_limit")
    a = open_("src", "127.0.0.2")
    assert a.recv(16) == b"up\n"
    with open_("src", "127.0.0.2") as again:
        assert read_all(again) == b""
    superd.wait_for_event(lambda e: e.get("reason") == "per_source_limit")
    b = open_("src", "127.0.0.3")
    assert b.recv(16) == b"up\n"
    # Four children run: --limit 4 refuses a fifth, of any service.
    with open_("other") as fifth:
        assert read_all(fifth) == b""
    superd.wait_for_event(lambda e: e.get("reason") == "process_limit")
    # A child ends: its instance slot (and the global one) come back.
    victim = min(superd.children())
    os.kill(victim, 15)
    superd.wait_for_event(lambda e: e.get("event") == "exit" and e.get("pid") == victim)
    assert victim in {int(line.split("pid=")[1].split()[0])
                      for line in superd.xinetd_lines() if line.startswith("START: inst")}
    with open_("inst") as sock:
        assert sock.recv(16) == b"up\n"
    for sock in [*inst, a, b]:
        sock.close()
