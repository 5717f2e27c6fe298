"""
systemd socket activation on the real daemon, with LISTEN_FDS set up by the
test (systemd is not running in CI): services adopt the passed sockets by
name instead of binding, and superd restarts while a client hammers a
service without a single refused connection.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import tempfile
import threading
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import pytest

from tests.access.clients import block
from tests.integration.external import read_all, service_block, wait_until, world_directory
from tests.integration.harness import Superd, SuperdStartError, require_program, twistd_command

#: Moves the passed fds to 3, 4, ... and sets LISTEN_PID to its own pid,
#: which exec keeps: what systemd does between fork and exec.
SHIM = """
import fcntl, os, sys
count = int(sys.argv[1])
sources = [int(fd) for fd in sys.argv[2:2 + count]]
high = [fcntl.fcntl(fd, fcntl.F_DUPFD, 100) for fd in sources]
for fd in sources:
    os.close(fd)
for i, fd in enumerate(high):
    os.dup2(fd, 3 + i)
    os.close(fd)
os.environ["LISTEN_PID"] = str(os.getpid())
os.execv(sys.argv[2 + count], sys.argv[2 + count:])
"""


#: No cps limit and no log lines: the hammer makes thousands of connections.
UNLIMITED = "\tcps = 0 0\n\tinstances = UNLIMITED\n"


def start_activated(conf: Path, sockets: Sequence[socket.socket], names: Sequence[str],
                    state_dir: str) -> Superd:
    """superd started as systemd would, with ``sockets`` as fds 3, 4, ..."""
    fds = [s.fileno() for s in sockets]
    command = twistd_command(str(conf), state_dir=state_dir)
    env = dict(os.environ, LISTEN_FDS=str(len(fds)), LISTEN_FDNAMES=":".join(names))
    env.pop("NOTIFY_SOCKET", None)
    process = subprocess.Popen(
        [sys.executable, "-c", SHIM, str(len(fds)), *map(str, fds), *command],
        pass_fds=fds, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True, env=env, bufsize=1)
    superd = Superd(process, state_dir, False)
    try:
        superd.wait_for_event(lambda e: e.get("event") == "ready", 20)
    except AssertionError as e:
        process.kill()
        process.wait(5)
        raise SuperdStartError(superd.stderr()) from e
    return superd


@pytest.fixture
def daemons() -> Iterator[list[Superd]]:
    started: list[Superd] = []
    yield started
    for superd in started:
        if superd.process.poll() is None:
            superd.stop()


def echo_once(port: int, payload: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", port), 20) as s:
        s.sendall(payload)
        s.shutdown(socket.SHUT_WR)
        data = b""
        while chunk := s.recv(4096):
            data += chunk
    return data


def test_services_adopt_named_sockets(conf_dir: Callable[..., Path], tmp_path: Path,
                                      daemons: list[Superd]) -> None:
    """A stream and a datagram socket passed by name serve echo; nothing is
    bound for those services; a third socket no service wants is reported."""
    conf = conf_dir(tcp=block("echo", "echo-tcp"),
                    udp=block("echo", "echo-udp", kind="dgram"))
    tcp = socket.create_server(("127.0.0.1", 0))
    udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    udp.bind(("127.0.0.1", 0))
    with tcp, udp:
        spare = socket.create_server(("127.0.0.1", 0))
        superd = start_activated(conf, [tcp, udp, spare], ["echo-tcp", "echo-udp", "spare"],
                                 str(tmp_path / "state"))
        spare.close()
        daemons.append(superd)
        assert superd.port("echo-tcp") == tcp.getsockname()[1]
        assert superd.port("echo-udp", "udp") == udp.getsockname()[1]
        assert echo_once(tcp.getsockname()[1], b"hello") == b"hello"
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as client:
            client.settimeout(5)
            client.sendto(b"ping", udp.getsockname())
            assert client.recv(100) == b"ping"
        adopted = [e for e in superd.events() if e.get("event") == "socket_adopted"
                   and e.get("service_id")]
        assert {e["service_id"] for e in adopted} == {"echo-tcp", "echo-udp"}
        unused = superd.wait_for_event(lambda e: e.get("unclaimed"))
        assert unused["name"] == "spare"
        assert superd.stop() == 0


class Hammer(threading.Thread):
    """Echo round trips back to back, counting successes and failures by kind."""

    def __init__(self, port: int) -> None:
        super().__init__(daemon=True)
        self.port = port
        self.done = threading.Event()
        self.ok = 0
        self.refused = 0
        #: Accepted, then closed unanswered: the old daemon stopping mid-session.
        self.cut = 0
        self.other: list[str] = []

    def run(self) -> None:
        n = 0
        while not self.done.is_set():
            n += 1
            payload = b"x%d" % n
            try:
                answer = echo_once(self.port, payload)
            except ConnectionRefusedError:
                self.refused += 1
                continue
            except OSError as e:
                self.other.append(repr(e))
                continue
            if answer == payload:
                self.ok += 1
            elif answer == b"":
                self.cut += 1
            else:
                self.other.append(f"answer {answer!r}")


def test_restart_under_load_refuses_nothing(conf_dir: Callable[..., Path],
                                            daemons: list[Superd]) -> None:
    """superd is stopped and started again on the same passed socket while a
    client makes echo round trips: no connection is refused, reset or cut
    short.  The old daemon finishes the sessions it had accepted before it
    exits (stop drains them); the ones made in the gap wait in the backlog
    and the new daemon serves them."""
    conf = conf_dir(tcp=block("echo", "echo-tcp", extra=UNLIMITED))
    listener = socket.create_server(("127.0.0.1", 0), backlog=1024)
    port = listener.getsockname()[1]
    hammer = Hammer(port)
    with listener, tempfile.TemporaryDirectory() as state:
        first = start_activated(conf, [listener], ["echo-tcp"], state)
        daemons.append(first)
        hammer.start()
        try:
            assert wait_until(lambda: hammer.ok > 10, timeout=10)
            before = hammer.ok
            assert first.stop() == 0
            gap_start = hammer.ok
            second = start_activated(conf, [listener], ["echo-tcp"], state)
            daemons.append(second)
            assert wait_until(lambda: hammer.ok > gap_start + 10, timeout=10)
        finally:
            hammer.done.set()
            hammer.join(30)
    assert before > 10 and hammer.ok > gap_start
    assert hammer.refused == 0
    assert hammer.other == []
    assert hammer.cut == 0


#: A wait=yes server: accepts one connection on the listening socket it got
#: as fd 0 and says which port that socket has.
ACCEPT_ONE = """\
import socket
listener = socket.socket(fileno=0)
conn, _ = listener.accept()
conn.sendall(b"%d\\n" % listener.getsockname()[1])
conn.close()
"""


@pytest.fixture
def world_dir() -> Iterator[Path]:
    yield from world_directory()


def test_wait_yes_server_gets_the_passed_socket(conf_dir: Callable[..., Path],
                                                tmp_path: Path, world_dir: Path,
                                                daemons: list[Superd]) -> None:
    """An external wait=yes server is handed the socket systemd passed (the
    server accepts on it), not one superd bound."""
    python = require_program("/usr/bin/python3")
    acceptor = world_dir / "accept_one.py"
    acceptor.write_text(ACCEPT_ONE)
    acceptor.chmod(0o644)
    conf = conf_dir(one=service_block("one", python, f"-I -S {acceptor}", wait="yes"))
    listener = socket.create_server(("127.0.0.1", 0))
    with listener:
        superd = start_activated(conf, [listener], ["one"], str(tmp_path / "state"))
        daemons.append(superd)
        port = listener.getsockname()[1]
        assert superd.port("one") == port
        with socket.create_connection(("127.0.0.1", port), 10) as client:
            assert read_all(client) == b"%d\n" % port
