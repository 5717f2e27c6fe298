"""
External servers under the real daemon with small, controllable programs:
the socket on fds 0-2, argv and environment, credentials, EXIT/FAIL lines,
bad servers (missing, exiting at once, ignoring SIGTERM), and a burst of
2,000 connections after which superd holds nothing more than when idle.
"""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from superd.proc.clonespawn import CloneSpawn
from tests.integration.external import (
    lines_starting,
    needs_root,
    pid_alive,
    read_all,
    script,
    service_block,
    wait_until,
)
from tests.integration.harness import Superd, require_program

Factory = Callable[..., Superd]
ConfDir = Callable[..., Path]


#: Runs as the server: reports what the child was given, one NAME=value a line.
PROBE = """\
import os, resource, sys
def out(name, value):
    os.write(1, f"{name}={value}\\n".encode())
with open("/proc/self/cmdline", "rb") as f:
    out("argv", " ".join(a.decode() for a in f.read().split(b"\\0")[:-1]))
out("ids", f"{os.getresuid()} {os.getresgid()} {os.getgroups()}")
mask = os.umask(0); out("umask", oct(mask))
out("nice", os.getpriority(os.PRIO_PROCESS, 0))
fds = []
for fd in range(1024):
    try:
        os.fstat(fd); fds.append(fd)
    except OSError:
        pass
out("fds", fds)
out("sockets", len({os.fstat(fd).st_ino for fd in (0, 1, 2)}))
out("session_leader", os.getsid(0) == os.getpid() == os.getpgid(0))
for name, value in sorted(os.environ.items()):
    out(name, value)
"""


def connect(superd: Superd, service_id: str, timeout: float = 10,
            source: str | None = None) -> socket.socket:
    port = superd.port(service_id)
    return socket.create_connection(("127.0.0.1", port), timeout=timeout,
                                    source_address=(source, 0) if source else None)


def test_cat_as_nobody_echoes_and_logs(superd_factory: Factory, conf_dir: ConfDir) -> None:
    """/bin/cat run as nobody for each connection echoes the client, the
    client sees EOF when cat exits, and START/EXIT lines carry pid, peer,
    status and duration."""
    superd = superd_factory(conf_dir(cat=service_block("cat", "/bin/cat")))
    with connect(superd, "cat") as sock:
        sock.sendall(b"x" * 100_000)
        sock.shutdown(socket.SHUT_WR)
        assert read_all(sock) == b"x" * 100_000
    exit_event = superd.wait_for_event(lambda e: e.get("event") == "exit")
    (start,) = lines_starting(superd, "START: cat")
    pid = exit_event["pid"]
    assert start == f"START: cat pid={pid} from=127.0.0.1"
    assert lines_starting(superd, "EXIT: cat") == [f"EXIT: cat status=0 pid={pid} duration=0(sec)"]


@needs_root
def test_child_sees_socket_env_and_credentials(superd_factory: Factory, conf_dir: ConfDir,
                                               world_dir: Path) -> None:
    """The child runs as nobody with no supplementary groups, umask and nice
    applied, only fds 0-2 (all the socket), in its own session, with argv[0]
    the basename and the xinetd/UCSPI environment."""
    python = require_program("/usr/bin/python3")  # not a shim: nobody runs it
    probe = world_dir / "probe"
    probe.write_text(PROBE)
    probe.chmod(0o644)
    conf = conf_dir(probe=service_block("probe", python, f"-I -S {probe} one", extra=(
        "umask = 027\nnice = 3\nenv = GREETING=hello\npassenv = PATH")))
    superd = superd_factory(conf)
    with connect(superd, "probe", source="127.0.0.2") as sock:
        out = read_all(sock).decode()
        local_port = sock.getpeername()[1]
        client_port = sock.getsockname()[1]
    facts = dict(line.split("=", 1) for line in out.splitlines() if "=" in line)
    assert facts["argv"] == f"{os.path.basename(python)} -I -S {probe} one", out
    assert facts["ids"] == "(65534, 65534, 65534) (65534, 65534, 65534) []"  # groups = no
    assert facts["umask"] == "0o27" and facts["nice"] == "3"
    assert facts["fds"] == "[0, 1, 2]"
    assert facts["sockets"] == "1"
    assert facts["session_leader"] == "True"
    assert facts["GREETING"] == "hello" and "PATH" in facts
    assert "HOME" not in facts and "LISTEN_FDS" not in facts
    assert facts["REMOTE_HOST"] == "127.0.0.2" and facts["REMOTE_ADDR"] == "127.0.0.2"
    assert facts["REMOTE_PORT"] == str(client_port)
    assert facts["PROTO"] == "TCP" and facts["TCPREMOTEIP"] == "127.0.0.2"
    assert facts["TCPLOCALIP"] == "127.0.0.1" and facts["TCPLOCALPORT"] == str(local_port)


@needs_root
def test_concurrent_children_of_a_user_started_off_the_reactor_thread(
        superd_factory: Factory, conf_dir: ConfDir, world_dir: Path) -> None:
    """The children are started without the reactor thread waiting for their
    exec -- cloned where superd's compiled module is built, else by its
    spawning threads (the daemon says which): 16 at once, each runs as
    nobody with no supplementary groups and only the socket as fds 0-2, and
    each is logged and reaped."""
    python = require_program("/usr/bin/python3")  # not a shim: nobody runs it
    probe = world_dir / "probe"
    probe.write_text(PROBE)
    probe.chmod(0o644)
    superd = superd_factory(conf_dir(probe=service_block("probe", python, f"-I -S {probe} x")))
    (mechanism,) = [e for e in superd.events() if e.get("event") == "spawn_mechanism"]
    assert mechanism["background"] == ("threads" if CloneSpawn.load() is None
                                       else "clone, without waiting for exec")

    def facts(i: int) -> dict[str, str]:
        with connect(superd, "probe") as sock:
            out = read_all(sock).decode()
        return dict(line.split("=", 1) for line in out.splitlines() if "=" in line)

    with ThreadPoolExecutor(16) as pool:
        seen = list(pool.map(facts, range(32)))
    for child in seen:
        assert child["ids"] == "(65534, 65534, 65534) (65534, 65534, 65534) []"
        assert child["fds"] == "[0, 1, 2]" and child["sockets"] == "1"
        assert child["session_leader"] == "True"
    assert wait_until(lambda: sum(1 for e in superd.events() if e.get("event") == "exit")
                      == 32, timeout=20)
    assert len(lines_starting(superd, "START: probe")) == 32
    assert wait_until(lambda: superd.children() == [])


def test_argv0_is_basename(superd_factory: Factory, conf_dir: ConfDir,
                           world_dir: Path) -> None:
    """argv[0] is the basename of ``server``; NAMEINARGS passes server_args
    as the whole argv."""
    show = script(world_dir, "show", 'tr "\\0" " " < /proc/$$/cmdline\n')
    conf = conf_dir(
        plain=service_block("plain", "/bin/sh", f"{show} a b"),
        named=service_block("named", "/bin/sh", f"mysh {show} c",
                            extra="flags = NAMEINARGS"))
    superd = superd_factory(conf)
    with connect(superd, "plain") as sock:
        assert read_all(sock) == f"sh {show} a b ".encode()
    with connect(superd, "named") as sock:
        assert read_all(sock) == f"mysh {show} c ".encode()


def test_exit_status_and_signal(superd_factory: Factory, conf_dir: ConfDir,
                                world_dir: Path) -> None:
    """A server exiting at once logs its real status; one killed by a signal
    logs signal=N; the client sees the connection close."""
    conf = conf_dir(
        false=service_block("false", script(world_dir, "f", "exit 3\n")),
        killed=service_block("killed", script(world_dir, "k", "kill -KILL $$\n")))
    superd = superd_factory(conf)
    for service_id in ("false", "killed"):
        with connect(superd, service_id) as sock:
            assert read_all(sock) == b""
    superd.wait_for_event(lambda e: e.get("event") == "exit" and e.get("signal") == 9)
    superd.wait_for_event(lambda e: e.get("event") == "exit" and e.get("status") == 3)
    assert any(line.startswith("EXIT: false status=3 pid=") for line in superd.xinetd_lines())
    assert any(line.startswith("EXIT: killed signal=9 pid=") for line in superd.xinetd_lines())


@pytest.mark.parametrize("extra", ["", "rlimit_files = 64"], ids=["direct", "prlimit"])
def test_server_removed_after_load(superd_factory: Factory, conf_dir: ConfDir,
                                   world_dir: Path, extra: str) -> None:
    """A server that disappears after load: FAIL exec with the reason and
    EXIT status=127, the client sees the connection close, no child, and
    superd keeps serving other services -- also when rlimit_* puts the
    prlimit wrapper in front of the server."""
    gone = script(world_dir, "gone", "exit 0\n")
    conf = conf_dir(gone=service_block("gone", gone, extra=extra),
                    cat=service_block("cat", "/bin/cat"))
    superd = superd_factory(conf)
    superd.allow_errors = True  # the spawn failure is logged at error level
    os.unlink(gone)
    with connect(superd, "gone") as sock:
        assert read_all(sock) == b""
    fail = superd.wait_for_event(lambda e: e.get("event") == "refuse")
    assert fail["reason"] == "exec" and fail["detail"] == "No such file or directory"
    superd.wait_for_event(lambda e: e.get("event") == "exit")
    assert "FAIL: gone exec from=127.0.0.1" in superd.xinetd_lines()
    assert "EXIT: gone status=127 pid=0 duration=0(sec)" in superd.xinetd_lines()
    with connect(superd, "cat") as sock:
        sock.sendall(b"still here")
        sock.shutdown(socket.SHUT_WR)
        assert read_all(sock) == b"still here"
    assert wait_until(lambda: superd.children() == [])


def test_stop_terms_then_kills_stubborn_group(superd_factory: Factory, conf_dir: ConfDir,
                                              world_dir: Path) -> None:
    """On SIGTERM superd stops listening, sends SIGTERM to each child's
    process group, SIGKILLs what ignores it after the grace period, and
    exits cleanly with no process of any group left behind."""
    stubborn = script(world_dir, "stubborn",
                      'trap "" TERM\nsleep 60 &\necho started\nwait\n')
    polite = script(world_dir, "polite", "echo started\nexec sleep 60\n")
    conf = conf_dir(stubborn=service_block("stubborn", stubborn),
                    polite=service_block("polite", polite))
    superd = superd_factory(conf, "--grace", "1.5")
    socks = [connect(superd, "stubborn"), connect(superd, "polite")]
    for sock in socks:
        assert sock.recv(64) == b"started\n"
    assert wait_until(lambda: len(superd.children()) == 2)
    children = superd.children()
    groups = {os.getpgid(pid) for pid in children}
    members = [int(p) for p in os.listdir("/proc") if p.isdigit() and _pgid(int(p)) in groups]
    started = time.monotonic()
    status = superd.stop(timeout=15)
    elapsed = time.monotonic() - started
    assert status == 0
    assert 1.4 <= elapsed < 8
    assert not [pid for pid in members if pid_alive(pid)]
    for sock in socks:
        sock.settimeout(5)
        assert read_all(sock) == b""
        sock.close()
    exits = [e for e in superd.events() if e.get("event") == "exit"]
    assert sorted(int(e["signal"]) for e in exits) == [9, 15]


def _pgid(pid: int) -> int:
    try:
        return os.getpgid(pid)
    except OSError:
        return -1


def test_two_thousand_connections_leave_nothing(superd_factory: Factory,
                                                conf_dir: ConfDir) -> None:
    """2,000 connections to a spawned service (16 at a time, each echoed by
    its own cat): afterwards superd's descriptor count is back to its idle
    value and no child is left."""
    # xinetd's default cps (50 a second) would pause the service.
    superd = superd_factory(conf_dir(cat=service_block("cat", "/bin/cat",
                                                       extra="cps = 100000 1")))
    idle = superd.idle_fds()

    def one(i: int) -> bool:
        payload = f"hello {i}".encode()
        with connect(superd, "cat") as sock:
            sock.sendall(payload)
            sock.shutdown(socket.SHUT_WR)
            return read_all(sock) == payload

    with ThreadPoolExecutor(16) as pool:
        results = list(pool.map(one, range(2000)))
    assert all(results)
    assert wait_until(lambda: superd.children() == [], timeout=20)
    assert not superd.fds_beyond(idle)
    exits = wait_until(lambda: sum(1 for e in superd.events() if e.get("event") == "exit")
                       == 2000, timeout=20)
    assert exits


def test_clients_that_vanish_or_never_read(superd_factory: Factory, conf_dir: ConfDir,
                                           world_dir: Path) -> None:
    """Clients that disconnect at once, and a child that never reads while
    the client floods it: no crash, no leak, children reaped."""
    sleeper = script(world_dir, "sleeper", "sleep 0.5\n")
    conf = conf_dir(cat=service_block("cat", "/bin/cat", extra="cps = 100000 1"),
                    sleeper=service_block("sleeper", sleeper))
    superd = superd_factory(conf)
    idle = superd.idle_fds()
    for _ in range(200):
        sock = connect(superd, "cat")
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\0\0\0\0\0\0\0")
        sock.close()  # RST at once
    flood = connect(superd, "sleeper")
    flood.setblocking(False)
    sent = 0
    try:
        while sent < 50_000_000:
            sent += flood.send(b"y" * 65536)
    except BlockingIOError:
        pass
    flood.close()
    assert wait_until(lambda: superd.children() == [], timeout=20)
    assert not superd.fds_beyond(idle)
    assert wait_until(lambda: sum(1 for e in superd.events() if e.get("event") == "exit")
                      == 201, timeout=20)




def test_banners_precede_the_server(superd_factory: Factory, conf_dir: ConfDir,
                                    world_dir: Path) -> None:
    """banner and banner_success written by superd reach the client before
    anything the spawned server writes (nothing superd queued is lost in the
    hand-off)."""
    (world_dir / "hello").write_bytes(b"banner\r\n")
    (world_dir / "welcome").write_bytes(b"welcome\r\n" * 2000)  # beyond one write
    conf = conf_dir(cat=service_block("cat", "/bin/cat", extra=(
        f"banner = {world_dir / 'hello'}\nbanner_success = {world_dir / 'welcome'}")))
    superd = superd_factory(conf)
    with connect(superd, "cat") as sock:
        sock.sendall(b"echoed")
        sock.shutdown(socket.SHUT_WR)
        assert read_all(sock) == b"banner\r\n" + b"welcome\r\n" * 2000 + b"echoed"
