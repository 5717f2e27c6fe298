"""
The spawn helpers under the real daemon: servers started by them, a helper
killed with connections in flight and children running (refused cleanly,
accounted until they end, restarted, no descriptor left), and stop.
"""

from __future__ import annotations

import os
import pwd
import signal
import socket
import subprocess
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from tests.integration.external import (
    SERVICE_USER,
    pid_alive,
    read_all,
    service_block,
    wait_until,
)
from tests.integration.harness import Superd
from tests.integration.test_external_basic import connect

Factory = Callable[..., Superd]
ConfDir = Callable[..., Path]


def echoed(superd: Superd, service_id: str, payload: bytes = b"ping") -> bytes:
    with connect(superd, service_id) as sock:
        sock.sendall(payload)
        sock.shutdown(socket.SHUT_WR)
        return read_all(sock)


def refused(superd: Superd, service_id: str) -> bool:
    """Whether the service closes a new connection without serving it."""
    with connect(superd, service_id) as sock:
        try:
            return read_all(sock) == b""
        except ConnectionResetError:
            return True


def parent_of(pid: int) -> int:
    with open(f"/proc/{pid}/stat") as f:
        return int(f.read().rsplit(")", 1)[1].split()[1])


def queued_requests(helper: int) -> int:
    """Bytes waiting in the helper's end of its socket (``ss``'s Recv-Q)."""
    inode = os.readlink(f"/proc/{helper}/fd/3").removeprefix("socket:[").removesuffix("]")
    listing = subprocess.run(["ss", "-x", "-a"], capture_output=True, text=True, check=True,
                             timeout=30).stdout
    for line in listing.splitlines():
        fields = line.split()
        if len(fields) >= 8 and fields[0] == "u_seq" and fields[5] == inode:
            return int(fields[2])
    raise AssertionError(f"no socket {inode} in ss's listing")


def test_servers_are_started_by_the_helpers(superd_factory: Factory,
                                            conf_dir: ConfDir) -> None:
    """No helper before the first connection; then two, ready, in superd's
    session, and the server (run as the service's user) is a child of one
    of them."""
    superd = superd_factory(conf_dir(cat=service_block("cat", "/bin/cat")),
                            "--spawn-helpers", "2")
    assert superd.helpers() == []
    assert echoed(superd, "cat") == b"ping"  # may be spawned by superd itself
    superd.wait_for_events(lambda e: e.get("event") == "spawn_helper"
                           and e.get("state") == "ready", 2)
    assert len(superd.helpers()) == 2
    assert all(os.getsid(helper) == os.getsid(superd.pid) for helper in superd.helpers())
    with connect(superd, "cat") as sock:
        sock.sendall(b"x")
        assert sock.recv(1) == b"x"
        (child,) = superd.children()
        assert parent_of(child) in superd.helpers()
        assert os.stat(f"/proc/{child}").st_uid == pwd.getpwnam(SERVICE_USER).pw_uid


def test_a_killed_helper_is_restarted_and_its_child_accounted(
        superd_factory: Factory, conf_dir: ConfDir) -> None:
    """instances = 1 and a running child whose helper is killed: the death is
    logged, the child still counts (a second client is refused) until it
    ends, a new helper is started, and nothing is left open."""
    conf = conf_dir(cat=service_block("cat", "/bin/cat", extra="instances = 1"))
    superd = superd_factory(conf, "--spawn-helpers", "1")
    superd.allow_errors = True  # refusals are logged at error level
    idle = superd.idle_fds()
    assert echoed(superd, "cat") == b"ping"
    superd.wait_for_event(lambda e: e.get("event") == "spawn_helper"
                          and e.get("state") == "ready")
    held = connect(superd, "cat")
    held.sendall(b"x")
    assert held.recv(1) == b"x"
    (child,) = superd.children()
    (helper,) = superd.helpers()
    assert parent_of(child) == helper
    os.kill(helper, signal.SIGKILL)
    lost = superd.wait_for_event(lambda e: e.get("state") == "lost")
    assert (lost["pid"], lost["requests"], lost["children"]) == (helper, 0, 1)
    # Still running, still counted: the service is at its limit.
    assert refused(superd, "cat")
    superd.wait_for_event(lambda e: e.get("event") == "refuse"
                          and e.get("reason") == "service_limit")
    held.sendall(b"y")
    assert held.recv(1) == b"y"
    held.close()
    assert wait_until(lambda: not pid_alive(child))
    # Released once it ended; served by a new helper (or superd until it is ready).
    assert wait_until(lambda: echoed(superd, "cat") == b"ping")
    superd.wait_for_events(lambda e: e.get("event") == "spawn_helper"
                           and e.get("state") == "ready", 2)
    assert echoed(superd, "cat") == b"ping"
    assert superd.helpers() != [helper] and len(superd.helpers()) == 1
    assert not superd.fds_beyond(idle)


def test_a_request_held_by_a_dying_helper_is_refused_cleanly(
        superd_factory: Factory, conf_dir: ConfDir) -> None:
    """A helper stopped with a request in its socket, then killed: the
    client's connection is closed, FAIL fork is logged, nothing leaks and
    the service keeps working."""
    superd = superd_factory(conf_dir(cat=service_block("cat", "/bin/cat")),
                            "--spawn-helpers", "1")
    superd.allow_errors = True  # the refusal is logged at error level
    idle = superd.idle_fds()
    assert echoed(superd, "cat") == b"ping"
    superd.wait_for_event(lambda e: e.get("state") == "ready")
    (helper,) = superd.helpers()
    os.kill(helper, signal.SIGSTOP)
    try:
        client = connect(superd, "cat")
        assert wait_until(lambda: queued_requests(helper) > 0)
    finally:
        os.kill(helper, signal.SIGKILL)
    lost = superd.wait_for_event(lambda e: e.get("state") == "lost")
    assert (lost["requests"], lost["children"]) == (1, 0)
    client.settimeout(10)
    assert read_all(client) == b""
    client.close()
    fail = superd.wait_for_event(lambda e: e.get("event") == "refuse")
    assert fail["reason"] == "fork"
    assert any(line.startswith("FAIL: cat fork from=127.0.0.1")
               for line in superd.xinetd_lines())
    assert wait_until(lambda: echoed(superd, "cat") == b"ping")
    assert wait_until(lambda: superd.children() == [])
    assert not superd.fds_beyond(idle)


def test_stop_waits_for_the_children_then_the_helpers_end(
        superd_factory: Factory, conf_dir: ConfDir) -> None:
    """superd's stop still stops the children (their exits now reported by
    the helpers), and the helpers end with superd (they ignore SIGTERM)."""
    superd = superd_factory(conf_dir(cat=service_block("cat", "/bin/cat")),
                            "--spawn-helpers", "2")
    assert echoed(superd, "cat") == b"ping"
    superd.wait_for_events(lambda e: e.get("state") == "ready", 2)
    held = connect(superd, "cat")
    held.sendall(b"x")
    assert held.recv(1) == b"x"
    (child,) = superd.children()
    helpers = superd.helpers()
    for helper in helpers:
        os.kill(helper, signal.SIGTERM)  # a supervisor signalling the group
    assert superd.stop(timeout=15) == 0
    assert not pid_alive(child)
    exits = [e for e in superd.events() if e.get("event") == "exit"]
    assert [int(e["signal"]) for e in exits if e.get("pid") == child] == [15]
    assert wait_until(lambda: not any(pid_alive(h) for h in helpers))
    held.close()


def test_ten_thousand_connections_leave_nothing(superd_factory: Factory,
                                                conf_dir: ConfDir) -> None:
    """10,000 connections through the helpers, 32 at a time: every one
    echoed, every child reaped (by its helper) and logged, superd holds
    what it held idle, and each helper holds what it held once ready."""
    superd = superd_factory(conf_dir(cat=service_block("cat", "/bin/cat",
                                                       extra="cps = 100000 1")),
                            "--spawn-helpers", "2")
    idle = superd.idle_fds()
    assert echoed(superd, "cat") == b"ping"
    superd.wait_for_events(lambda e: e.get("state") == "ready", 2)
    helpers = superd.helpers()
    helper_fds = {h: sorted(os.listdir(f"/proc/{h}/fd")) for h in helpers}

    def one(i: int) -> bool:
        return echoed(superd, "cat", f"hello {i}".encode()) == f"hello {i}".encode()

    with ThreadPoolExecutor(32) as pool:
        assert all(pool.map(one, range(10_000)))
    assert wait_until(lambda: superd.children() == [], timeout=30)
    assert wait_until(lambda: sum(1 for e in superd.events() if e.get("event") == "exit")
                      == 10_001, timeout=30)
    assert not superd.fds_beyond(idle)
    assert superd.helpers() == helpers
    assert {h: sorted(os.listdir(f"/proc/{h}/fd")) for h in helpers} == helper_fds
