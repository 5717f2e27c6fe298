"""A real ``redis-server`` for tests: loopback port, no persistence, stopped by PID."""

from __future__ import annotations

import os
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator

import pytest

from tests.integration.harness import require_program


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class RedisServer:
    """One redis-server on 127.0.0.1:port; ``stop``/``start`` keep the port."""

    def __init__(self, program: str, port: int, password: str | None = None) -> None:
        self.program = program
        self.port = port
        self.password = password
        self.directory = tempfile.mkdtemp(prefix="superd-redis-")
        self.process: subprocess.Popen[bytes] | None = None

    def url_for(self, db: int = 0) -> str:
        auth = f":{self.password}@" if self.password else ""
        return f"redis://{auth}127.0.0.1:{self.port}/{db}"

    @property
    def url(self) -> str:
        return self.url_for(0)

    def start(self, timeout: float = 10) -> None:
        self.process = subprocess.Popen(
            [self.program, "--port", str(self.port), "--bind", "127.0.0.1",
             "--save", "", "--appendonly", "no", "--dir", self.directory,
             "--protected-mode", "no", "--daemonize", "no", "--loglevel", "warning",
             *(["--requirepass", self.password] if self.password else [])],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.ping():
                return
            time.sleep(0.05)
        self.stop()
        raise AssertionError(f"redis-server did not answer on port {self.port}")

    def ping(self) -> bool:
        try:
            return self.command("PING").endswith(b"+PONG\r\n")
        except OSError:
            return False

    def command(self, *args: str, db: int = 0) -> bytes:
        """One command (after AUTH/SELECT as needed), raw replies (enough for tests)."""
        commands = [args]
        if db:
            commands.insert(0, ("SELECT", str(db)))
        if self.password:
            commands.insert(0, ("AUTH", self.password))
        payload = b"".join(
            b"*%d\r\n" % len(c) + b"".join(
                b"$%d\r\n%s\r\n" % (len(a.encode()), a.encode()) for a in c)
            for c in commands)
        with socket.create_connection(("127.0.0.1", self.port), 2) as s:
            s.sendall(payload)
            time.sleep(0.05)
            return s.recv(65536)

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
    server = RedisServer(require_program("redis-server"), free_port())
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def redis_with_password() -> Iterator[RedisServer]:
    """A started redis-server that requires AUTH, stopped (by PID) at teardown."""
    server = RedisServer(require_program("redis-server"), free_port(), "s3cret")
    server.start()
    try:
        yield server
    finally:
        server.stop()
