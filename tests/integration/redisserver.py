"""
A real ``redis-server`` for the fleet tests: on a loopback port, without
persistence, stopped by PID.

redis-server cannot be asked to bind port 0 and say which port it got, so a
candidate port is taken from the kernel and the server is started on it;
it counts as ours only once the process we started answers ``INFO`` with
its own pid.  Another process that took the port in between makes our
server exit (it cannot bind), and the next candidate is tried.
"""

from __future__ import annotations

import os
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator

import pytest

from tests.integration.harness import require_program

#: Candidate ports tried before giving up.
ATTEMPTS = 5


def _candidate_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _replies(data: bytes) -> int:
    """How many complete RESP replies ``data`` holds."""
    count, at = 0, 0
    pending = [1]  # replies still owed at each nesting level
    while at < len(data):
        end = data.find(b"\r\n", at)
        if end < 0:
            break
        kind, value = data[at:at + 1], data[at + 1:end]
        at = end + 2
        if kind == b"$" and int(value) >= 0:
            if len(data) < at + int(value) + 2:
                break
            at += int(value) + 2
        if kind == b"*" and int(value) > 0:
            pending[-1] -= 1
            pending.append(int(value))
            continue
        pending[-1] -= 1
        while len(pending) > 1 and pending[-1] == 0:
            pending.pop()
        if len(pending) == 1 and pending[0] == 0:
            count += 1
            pending = [1]
    return count


class RedisServer:
    """One redis-server on 127.0.0.1; ``stop`` then ``start`` keeps its port."""

    def __init__(self, program: str, password: str | None = None) -> None:
        self.program = program
        self.password = password
        #: Chosen by the first start, kept by later ones.
        self.port = 0
        self.directory = tempfile.mkdtemp(prefix="superd-redis-")
        self.process: subprocess.Popen[bytes] | None = None

    def url_for(self, db: int = 0) -> str:
        auth = f":{self.password}@" if self.password else ""
        return f"redis://{auth}127.0.0.1:{self.port}/{db}"

    @property
    def url(self) -> str:
        return self.url_for(0)

    def start(self, timeout: float = 10) -> None:
        """Start on a fresh port (first start) or on the same port again."""
        if self.port:
            if not self._start_on(self.port, timeout):
                raise AssertionError(f"redis-server could not listen on port {self.port}"
                                     " again")
            return
        for _ in range(ATTEMPTS):
            port = _candidate_port()
            if self._start_on(port, timeout):
                self.port = port
                return
        raise AssertionError(f"redis-server did not start on any of {ATTEMPTS} ports")

    def _start_on(self, port: int, timeout: float) -> bool:
        process = self.process = subprocess.Popen(
            [self.program, "--port", str(port), "--bind", "127.0.0.1",
             "--save", "", "--appendonly", "no", "--dir", self.directory,
             "--protected-mode", "no", "--daemonize", "no", "--loglevel", "warning",
             *(["--requirepass", self.password] if self.password else [])],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and process.poll() is None:
            if self._answers_as(process.pid, port):
                return True
            time.sleep(0.05)
        self.stop()
        return False

    def _answers_as(self, pid: int, port: int) -> bool:
        try:
            info = self._command(port, ("INFO", "server"))
        except OSError:
            return False
        return f"process_id:{pid}\r\n".encode() in info

    def ping(self) -> bool:
        try:
            return self.command("PING").endswith(b"+PONG\r\n")
        except OSError:
            return False

    def command(self, *args: str, db: int = 0) -> bytes:
        """One command (after AUTH/SELECT as needed); every reply, raw."""
        return self._command(self.port, args, db)

    def _command(self, port: int, args: tuple[str, ...], db: int = 0) -> bytes:
        commands = [args]
        if db:
            commands.insert(0, ("SELECT", str(db)))
        if self.password:
            commands.insert(0, ("AUTH", self.password))
        payload = b"".join(
            b"*%d\r\n" % len(c) + b"".join(
                b"$%d\r\n%s\r\n" % (len(a.encode()), a.encode()) for a in c)
            for c in commands)
        with socket.create_connection(("127.0.0.1", port), 2) as s:
            s.sendall(payload)
            data = b""
            while _replies(data) < len(commands):
                chunk = s.recv(65536)
                if not chunk:
                    raise ConnectionError("redis-server closed before answering")
                data += chunk
            return data

    def stop(self) -> None:
        process, self.process = self.process, None
        if process is not None and process.poll() is None:
            os.kill(process.pid, 15)
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                os.kill(process.pid, 9)
                process.wait(5)


@pytest.fixture
def redis_server() -> Iterator[RedisServer]:
    """A started redis-server, stopped (by PID) at teardown."""
    server = RedisServer(require_program("redis-server"))
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def redis_with_password() -> Iterator[RedisServer]:
    """A started redis-server that requires AUTH, stopped (by PID) at teardown."""
    server = RedisServer(require_program("redis-server"), "s3cret")
    server.start()
    try:
        yield server
    finally:
        server.stop()
