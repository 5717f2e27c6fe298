"""
UNIX-domain listening sockets on the real daemon, with real UNIX-socket
clients (some running as ``nobody`` through ``setpriv``): builtins, external
servers and their UCSPI variables, ``only_uid``/``only_gid``, the socket
file's mode and owner, stale and foreign files at the path, removal at stop,
a reload that keeps the file while a client hammers it, a wait = yes server,
a redirect, a user protocol and a socket passed by systemd.
"""

from __future__ import annotations

import os
import socket
import stat
import subprocess
import sys
import tempfile
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.integration.external import (
    SERVICE_USER,
    acceptor,
    lines_starting,
    needs_root,
    read_all,
    wait_until,
)
from tests.integration.harness import Superd, require_program, run_twistd
from tests.integration.reloading import reload_and_wait
from tests.integration.test_activation import start_activated
from tests.integration.test_userproto import EXAMPLE

Factory = Callable[..., Superd]
ConfDir = Callable[..., Path]

NOBODY = 65534

#: Runs as the client (python3 -I -S -c CLIENT PATH PAYLOAD): connects,
#: sends PAYLOAD and EOF, prints its pid, then what it read, or the error's name.
CLIENT = """\
import os, socket, sys
out = sys.stdout.buffer
out.write(b"pid=%d\\n" % os.getpid())
try:
    with socket.socket(socket.AF_UNIX) as s:
        s.settimeout(10)
        s.connect(sys.argv[1])
        if sys.argv[2]:
            s.sendall(sys.argv[2].encode())
            s.shutdown(socket.SHUT_WR)
        data = b""
        while chunk := s.recv(65536):
            data += chunk
    out.write(data)
except OSError as e:
    out.write(b"error=" + type(e).__name__.encode())
"""


def block(name: str, path: Path | str, *lines: str, service_id: str | None = None) -> str:
    """A service block listening on ``unix:path``, logging everything."""
    body = [f"\tid = {service_id or name}", "\tsocket_type = stream", "\twait = no",
            f"\tbind = unix:{path}", "\tlog_on_success = PID HOST EXIT DURATION",
            "\tlog_on_failure = HOST", *(f"\t{line}" for line in lines)]
    return "service " + name + "\n{\n" + "\n".join(body) + "\n}\n"


def builtin(path: Path | str, *lines: str, name: str = "echo",
            service_id: str | None = None) -> str:
    return block(name, path, "type = INTERNAL", "cps = 0 0", *lines, service_id=service_id)


def exchange(path: Path | str, payload: bytes = b"hello") -> bytes:
    """Connect as this process, send ``payload`` and EOF (nothing at all if
    it is empty), read to EOF."""
    with socket.socket(socket.AF_UNIX) as sock:
        sock.settimeout(10)
        sock.connect(str(path))
        if payload:
            sock.sendall(payload)
            sock.shutdown(socket.SHUT_WR)
        return read_all(sock)


def as_user(user: str, group: str, path: Path | str,
            payload: str = "hello") -> tuple[int, bytes]:
    """Run ``CLIENT`` as ``user:group`` (no supplementary groups): its pid
    and what it read, or ``error=NAME``."""
    setpriv = require_program("setpriv")
    python = require_program("/usr/bin/python3")
    done = subprocess.run(
        [setpriv, f"--reuid={user}", f"--regid={group}", "--clear-groups",
         python, "-I", "-S", "-c", CLIENT, str(path), payload],
        capture_output=True, timeout=30, check=True)
    first, _, rest = done.stdout.partition(b"\n")
    return int(first.split(b"=")[1]), rest


def facts(output: bytes) -> dict[str, str]:
    """``NAME=value`` lines (what env prints) as a dictionary."""
    return dict(line.split("=", 1) for line in output.decode().splitlines() if "=" in line)


def test_echo_builtin_on_a_unix_socket(superd_factory: Factory, conf_dir: ConfDir,
                                       world_dir: Path) -> None:
    """echo answers over the UNIX socket; the file is a socket with the
    default mode 0666; START/EXIT lines say ``from=uid:N``; the file goes
    when superd stops."""
    path = world_dir / "echo.sock"
    superd = superd_factory(conf_dir(echo=builtin(path)))
    assert stat.S_ISSOCK(path.lstat().st_mode)
    assert stat.S_IMODE(path.lstat().st_mode) == 0o666
    assert exchange(path, b"x" * 100_000) == b"x" * 100_000
    listening = superd.wait_for_event(lambda e: e.get("event") == "listening")
    assert (listening["protocol"], listening["host"]) == ("unix", str(path))
    superd.wait_for_event(lambda e: e.get("xinetd_line", "").startswith("EXIT: echo"))
    assert lines_starting(superd, "START: echo") == [
        f"START: echo pid=0 from=uid:{os.geteuid()}"]
    assert superd.stop() == 0
    assert not path.exists()


@needs_root
def test_external_server_sees_the_peer_s_credentials(superd_factory: Factory,
                                                     conf_dir: ConfDir,
                                                     world_dir: Path) -> None:
    """/usr/bin/env, run for a client that is ``nobody``: PROTO=UNIX, the
    socket's path and the client's uid, gid and pid; no REMOTE_* or TCP*
    variable; the START line shows the client's uid."""
    path = world_dir / "env.sock"
    superd = superd_factory(conf_dir(env=block(
        "env", path, f"user = {SERVICE_USER}", "server = /usr/bin/env", "passenv =")))
    pid, output = as_user("nobody", "nogroup", path, payload="")  # env reads nothing
    found = facts(output)
    assert found == {"PROTO": "UNIX", "UNIXLOCALPATH": str(path),
                     "UNIXREMOTEEUID": str(NOBODY), "UNIXREMOTEEGID": str(NOBODY),
                     "UNIXREMOTEPID": str(pid)}, output
    exit_event = superd.wait_for_event(lambda e: e.get("event") == "exit")
    assert lines_starting(superd, "START: env") == [
        f"START: env pid={exit_event['pid']} from=uid:{NOBODY}"]
    start = superd.wait_for_event(lambda e: e.get("event") == "start")
    assert (start["peer_uid"], start["peer_gid"], start["peer_pid"]) == (NOBODY, NOBODY, pid)


@needs_root
def test_only_uid_and_only_gid_choose_the_clients(superd_factory: Factory,
                                                  conf_dir: ConfDir,
                                                  world_dir: Path) -> None:
    """only_uid = root refuses a client running as nobody (closed unanswered,
    FAIL ``credentials`` ``from=uid:65534``) and serves root; only_gid =
    nogroup serves nobody and refuses root."""
    root_only, group_only = world_dir / "root.sock", world_dir / "group.sock"
    superd = superd_factory(conf_dir(
        a=builtin(root_only, "only_uid = root", service_id="rootecho"),
        b=builtin(group_only, "only_gid = nogroup", service_id="groupecho")))
    # Sending nothing: a refused client's unread bytes would make its end see a reset.
    assert as_user("nobody", "nogroup", root_only, payload="")[1] == b""
    superd.wait_for_event(lambda e: e.get("xinetd_line") ==
                          f"FAIL: rootecho credentials from=uid:{NOBODY}")
    assert exchange(root_only) == b"hello"
    assert as_user("nobody", "nogroup", group_only)[1] == b"hello"
    assert exchange(group_only, b"") == b""
    refusal = superd.wait_for_event(
        lambda e: e.get("event") == "refuse" and e.get("service_id") == "groupecho")
    assert (refusal["reason"], refusal["peer_uid"]) == ("credentials", 0)


@needs_root
def test_socket_mode_and_owner_are_applied(superd_factory: Factory, conf_dir: ConfDir,
                                           world_dir: Path) -> None:
    """socket_mode 0660 and socket_owner nobody:nogroup are on the file:
    nobody connects, another user (daemon) is refused by the kernel."""
    path = world_dir / "private.sock"
    superd_factory(conf_dir(echo=builtin(path, "socket_mode = 0660",
                                         "socket_owner = nobody:nogroup")))
    status = path.lstat()
    assert stat.S_IMODE(status.st_mode) == 0o660
    assert (status.st_uid, status.st_gid) == (NOBODY, NOBODY)
    assert as_user("nobody", "nogroup", path)[1] == b"hello"
    assert as_user("daemon", "daemon", path)[1] == b"error=PermissionError"


def _stale(path: Path) -> None:
    sock = socket.socket(socket.AF_UNIX)
    sock.bind(str(path))
    sock.close()  # the file stays, as a killed daemon leaves it


def test_a_stale_socket_file_is_replaced(superd_factory: Factory, conf_dir: ConfDir,
                                         world_dir: Path) -> None:
    """A socket file nobody listens on is replaced at start, and logged."""
    path = world_dir / "stale.sock"
    _stale(path)
    superd = superd_factory(conf_dir(echo=builtin(path)))
    assert exchange(path) == b"hello"
    event = superd.wait_for_event(lambda e: e.get("event") == "stale_socket")
    assert event["path"] == str(path)


def test_a_regular_file_at_the_path_is_refused_and_untouched(conf_dir: ConfDir,
                                                             world_dir: Path) -> None:
    """A regular file where the socket should be stops startup (exit 71) with
    the service's bind line, and keeps its contents; the socket file of the
    service bound before it is removed again."""
    path, bound = world_dir / "data.sock", world_dir / "first.sock"
    path.write_text("not a socket\n")
    text = builtin(bound) + builtin(path, name="discard")
    conf = conf_dir(both=text)
    line = text.splitlines().index(f"\tbind = unix:{path}") + 1
    result = run_twistd(str(conf))
    assert result.returncode == 71, result
    assert result.stderr == (
        f"superd: {conf / 'both'}:{line}: service discard: cannot listen on unix {path}:"
        f" {path} exists and is a regular file, not a socket; superd replaces only a stale"
        " socket file\n")
    assert path.read_text() == "not a socket\n"
    assert not bound.exists()


def test_a_socket_someone_listens_on_is_refused(conf_dir: ConfDir, world_dir: Path) -> None:
    """A live socket at the path (another daemon's) stops startup and keeps serving."""
    path = world_dir / "live.sock"
    with socket.socket(socket.AF_UNIX) as live:
        live.bind(str(path))
        live.listen(5)
        result = run_twistd(str(conf_dir(echo=builtin(path))))
        assert result.returncode == 71, result
        assert f"cannot listen on unix {path}: another process listens on {path}" \
            in result.stderr
        with socket.socket(socket.AF_UNIX) as client:
            client.connect(str(path))


class Hammer(threading.Thread):
    """Echo round trips back to back over a UNIX socket, counting failures."""

    def __init__(self, path: Path) -> None:
        super().__init__(daemon=True)
        self.path = path
        self.done = threading.Event()
        self.ok = 0
        self.failures: list[str] = []

    def run(self) -> None:
        n = 0
        while not self.done.is_set() and n < 200_000:
            n += 1
            payload = b"x%d" % n
            try:
                answer = exchange(self.path, payload)
            except OSError as e:  # refused, or no file at the path
                self.failures.append(repr(e))
                continue
            if answer == payload:
                self.ok += 1
            else:
                self.failures.append(f"answer {answer!r}")


def test_a_reload_keeps_the_socket_file(superd_factory: Factory, conf_dir: ConfDir,
                                        world_dir: Path) -> None:
    """Reloads that change the service (its mode, its limits) keep the very
    socket file -- same inode, new mode applied -- and a client making round
    trips throughout is never refused; a reload to another path binds the
    new one and removes the old."""
    path = world_dir / "kept.sock"
    conf = conf_dir(echo=builtin(path, "socket_mode = 0666"))
    superd = superd_factory(conf, "--grace", "2")
    inode = path.lstat().st_ino
    hammer = Hammer(path)
    hammer.start()
    try:
        assert wait_until(lambda: hammer.ok > 20)
        for mode, instances in (("0660", "50"), ("0600", "40"), ("0666", "UNLIMITED")):
            (conf / "echo").write_text(builtin(path, f"socket_mode = {mode}",
                                               f"instances = {instances}"))
            before = hammer.ok
            assert reload_and_wait(superd)["ok"]
            assert stat.S_IMODE(path.lstat().st_mode) == int(mode, 8)
            assert wait_until(lambda b=before: hammer.ok > b + 20)  # type: ignore[misc]
    finally:
        hammer.done.set()
        hammer.join(30)
    assert hammer.failures == [] and hammer.ok > 60
    assert path.lstat().st_ino == inode
    moved = world_dir / "moved.sock"
    (conf / "echo").write_text(builtin(moved))
    assert reload_and_wait(superd)["ok"]
    assert exchange(moved) == b"hello"
    assert wait_until(lambda: not path.exists())


def test_wait_yes_server_gets_the_unix_socket(superd_factory: Factory, conf_dir: ConfDir,
                                              world_dir: Path) -> None:
    """A wait = yes server is given the listening UNIX socket and accepts on
    it itself; xinetd's REMOTE_HOST says no peer is known."""
    python = require_program("/usr/bin/python3")
    path = world_dir / "wait.sock"
    script = acceptor(world_dir, "REMOTE_HOST", idle=2.0)
    superd = superd_factory(conf_dir(waiter=block(
        "waiter", path, f"user = {SERVICE_USER}", f"server = {python}",
        f"server_args = -I -S {script}").replace("wait = no", "wait = yes")))
    answer = exchange(path, b"").decode()  # the server reads nothing
    pid, remote = answer.split(" ", 1)
    assert remote == "<no address>\n"
    exit_event = superd.wait_for_event(lambda e: e.get("event") == "exit", timeout=20)
    assert exit_event["pid"] == int(pid)
    assert superd.stop() == 0
    assert not path.exists()


@pytest.fixture
def upstream() -> Iterator[int]:
    """A TCP echo server on 127.0.0.1 (the redirect's target): its port."""
    server = socket.create_server(("127.0.0.1", 0))
    server.settimeout(0.2)
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                conn, _ = server.accept()
            except TimeoutError:
                continue
            with conn:
                conn.settimeout(10)
                conn.sendall(read_all(conn))

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield server.getsockname()[1]
    stop.set()
    thread.join(10)
    server.close()


def test_redirect_from_a_unix_socket(superd_factory: Factory, conf_dir: ConfDir,
                                     world_dir: Path, upstream: int) -> None:
    """A redirect relays a UNIX-socket client to a TCP server."""
    path = world_dir / "relay.sock"
    superd_factory(conf_dir(relay=block("relay", path, f"redirect = 127.0.0.1 {upstream}",
                                         f"user = {SERVICE_USER}")))
    assert exchange(path, b"through the relay") == b"through the relay"


def test_user_protocol_on_a_unix_socket(superd_factory: Factory, conf_dir: ConfDir,
                                        world_dir: Path) -> None:
    """A user's protocol (the greeter example) serves a UNIX socket."""
    path = world_dir / "greeter.sock"
    superd_factory(conf_dir(greeter=block(
        "greeter", path, "type = INTERNAL", "factory = superd_greeter:greeter",
        "greeting = Welcome over UNIX")), env={"PYTHONPATH": EXAMPLE})
    assert exchange(path, b"Ada\nquit\n").split(b"\r\n")[:3] == [
        b"Welcome over UNIX", b"Hello, Ada!", b"Bye"]


def test_a_unix_socket_passed_by_systemd_is_adopted(conf_dir: ConfDir,
                                                    world_dir: Path) -> None:
    """A listening UNIX socket passed in LISTEN_FDS, named after the service,
    serves it; superd keeps the file's mode and leaves the file at stop (it
    is systemd's)."""
    path = world_dir / "passed.sock"
    conf = conf_dir(echo=builtin(path, service_id="unixecho"))
    listener = socket.socket(socket.AF_UNIX)
    listener.bind(str(path))
    listener.listen(16)
    os.chmod(path, 0o600)
    with listener, tempfile.TemporaryDirectory() as state:
        superd = start_activated(conf, [listener], ["unixecho"], state)
        try:
            adopted = superd.wait_for_event(lambda e: e.get("event") == "socket_adopted"
                                            and e.get("service_id") == "unixecho")
            assert adopted["host"] == str(path)
            assert exchange(path) == b"hello"
        finally:
            assert superd.stop() == 0
        assert stat.S_IMODE(path.lstat().st_mode) == 0o600
        assert exchange_backlog(listener, path)


def exchange_backlog(listener: socket.socket, path: Path) -> bool:
    """The passed socket still accepts (superd did not shut it down)."""
    with socket.socket(socket.AF_UNIX) as client:
        client.connect(str(path))
        conn, _ = listener.accept()
        conn.close()
    return True


def test_no_descriptor_leaks_after_many_connections(superd_factory: Factory,
                                                     conf_dir: ConfDir,
                                                     world_dir: Path) -> None:
    """Refused and served UNIX connections leave the daemon holding what it held idle."""
    served, refused = world_dir / "served.sock", world_dir / "refused.sock"
    superd = superd_factory(conf_dir(
        a=builtin(served, service_id="served"),
        b=builtin(refused, "only_uid = 4242", service_id="refused")))
    idle = superd.idle_fds()
    for _ in range(300):
        assert exchange(served) == b"hello"
        assert exchange(refused, b"") == b""
    assert not superd.fds_beyond(idle)
    assert sys.platform == "linux"  # SO_PEERCRED is Linux's
