"""
A real ``redis-server`` for tests: loopback, no persistence, stopped by PID.

redis-server cannot bind port 0 and say which port it got, so a free port
is picked and then verified: the server answering on it must report our
process's id (``INFO server``), else another port is tried.  Optionally
with ACL users and with TLS only (``--port 0 --tls-port``, certificates from
``tests.certs``).
"""

from __future__ import annotations

import os
import socket
import ssl
import subprocess
import tempfile
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest

from superd.fleet.resp import RespParser
from tests.certs import PKI
from tests.integration.harness import require_program

#: Ports tried before giving up (another process may take a picked port).
ATTEMPTS = 5


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class RedisServer:
    """One redis-server on 127.0.0.1:port; ``stop``/``start`` keep the port."""

    def __init__(self, program: str, password: str | None = None, *,
                 users: Sequence[str] = (), pki: PKI | None = None,
                 admin: tuple[str, str] | None = None) -> None:
        self.program = program
        self.port = 0
        self.password = password
        #: ACL rules, one ``--user`` each (``"superd on >pw ~* &* +@all"``).
        self.users = tuple(users)
        #: TLS only (the plain port is off): the server's certificate and CA.
        self.pki = pki
        #: The (user, password) the test's own commands authenticate with.
        self.admin = admin
        self.directory = tempfile.mkdtemp(prefix="superd-redis-")
        self.process: subprocess.Popen[bytes] | None = None

    def url_for(self, db: int = 0) -> str:
        """The URL superd is given: never with the password (the command line
        refuses one); see ``password_file``."""
        scheme = "rediss" if self.pki else "redis"
        ca = f"?ca={self.pki.ca_path}" if self.pki else ""
        return f"{scheme}://127.0.0.1:{self.port}/{db}{ca}"

    @property
    def url(self) -> str:
        return self.url_for(0)

    def password_file(self, directory: Path, password: str | None = None) -> str:
        """A 0600 file holding ``password`` (default: the server's)."""
        path = directory / "redis.password"
        path.write_text((password or self.password or "") + "\n")
        path.chmod(0o600)
        return str(path)

    def _argv(self) -> list[str]:
        argv = [self.program, "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
                "--dir", self.directory, "--protected-mode", "no", "--daemonize", "no",
                "--loglevel", "warning"]
        if self.pki is None:
            argv += ["--port", str(self.port)]
        else:
            argv += ["--port", "0", "--tls-port", str(self.port),
                     "--tls-cert-file", str(self.pki.server.cert_path),
                     "--tls-key-file", str(self.pki.server.key_path),
                     "--tls-ca-cert-file", str(self.pki.ca_path),
                     "--tls-auth-clients", "no"]
        if self.password:
            argv += ["--requirepass", self.password]
        for rule in self.users:
            argv += ["--user", *rule.split()]
        return argv

    def start(self, timeout: float = 10) -> None:
        """Start (on a new verified port the first time, the same port after)."""
        if self.port:
            self._start_on(self.port, timeout)
            return
        for _ in range(ATTEMPTS):
            self.port = free_port()
            if self._start_on(self.port, timeout, give_up=False):
                return
        raise AssertionError(f"redis-server found no free port in {ATTEMPTS} tries")

    def _start_on(self, port: int, timeout: float, give_up: bool = True) -> bool:
        self.process = subprocess.Popen(
            self._argv(), stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                break  # could not bind: the port was taken meanwhile
            if self._answering_pid() == self.process.pid:
                return True
            time.sleep(0.05)
        self.stop()
        if give_up:
            raise AssertionError(f"redis-server did not answer on port {port}")
        return False

    def _answering_pid(self) -> int | None:
        try:
            info = self.command("INFO", "server")
        except OSError:
            return None
        for line in info.split(b"\r\n"):
            if line.startswith(b"process_id:"):
                return int(line.split(b":", 1)[1])
        return None

    def ping(self) -> bool:
        try:
            return self.command("PING").endswith(b"+PONG\r\n")
        except OSError:
            return False

    def _connect(self) -> socket.socket:
        plain = socket.create_connection(("127.0.0.1", self.port), 2)
        if self.pki is None:
            return plain
        context = ssl.create_default_context(cafile=str(self.pki.ca_path))
        return context.wrap_socket(plain, server_hostname="127.0.0.1")

    def command(self, *args: str, db: int = 0) -> bytes:
        """One command (after AUTH/SELECT as needed), raw replies (enough for tests)."""
        commands = [args]
        if db:
            commands.insert(0, ("SELECT", str(db)))
        if self.admin:
            commands.insert(0, ("AUTH", *self.admin))
        elif self.password:
            commands.insert(0, ("AUTH", self.password))
        return self.send(encode_commands(commands), len(commands))

    def send(self, payload: bytes, replies: int = 1, timeout: float = 60) -> bytes:
        """Raw RESP commands; the raw bytes of their ``replies`` replies."""
        parser = RespParser(max_bulk=1 << 30, max_items=1 << 24, max_buffer=1 << 30)
        data = b""
        with self._connect() as s:
            s.settimeout(timeout)
            s.sendall(payload)
            while replies:
                chunk = s.recv(1 << 20)
                if not chunk:
                    break
                data += chunk
                parser.feed(chunk)
                while replies and parser.next_reply()[0]:
                    replies -= 1
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


def encode_commands(commands: Sequence[Sequence[str]]) -> bytes:
    """RESP arrays of bulk strings, one per command."""
    return b"".join(
        b"*%d\r\n" % len(c) + b"".join(
            b"$%d\r\n%s\r\n" % (len(a.encode()), a.encode()) for a in c)
        for c in commands)


def started(server: RedisServer) -> Iterator[RedisServer]:
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def redis_server() -> Iterator[RedisServer]:
    """A started redis-server, stopped (by PID) at teardown."""
    yield from started(RedisServer(require_program("redis-server")))


@pytest.fixture
def redis_with_password() -> Iterator[RedisServer]:
    """A started redis-server that requires AUTH, stopped (by PID) at teardown."""
    yield from started(RedisServer(require_program("redis-server"), "s3cret"))
