"""Helpers for the external-server integration tests (test_external_*.py)."""

from __future__ import annotations

import os
import pwd
import shutil
import socket
import stat
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.integration.harness import Superd

#: Root runs services as nobody (superd changes credentials); anyone else can
#: only run them as themselves.
SERVICE_USER = "nobody" if os.geteuid() == 0 else pwd.getpwuid(os.geteuid()).pw_name

#: For tests of what only a root superd can do (credentials, sshd, chroot).
needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="needs superd to run as root")


def service_block(service_id: str, server: str, args: str = "", *,
                  user: str = SERVICE_USER, wait: str = "no", socket_type: str = "stream",
                  extra: str = "", name: str | None = None) -> str:
    """An UNLISTED external service on 127.0.0.1, port 0, with full logging."""
    protocol = "tcp" if socket_type == "stream" else "udp"
    lines = [
        f"service {name or service_id}", "{",
        f"\tid             = {service_id}",
        "\ttype           = UNLISTED",
        f"\tsocket_type    = {socket_type}",
        f"\tprotocol       = {protocol}",
        f"\twait           = {wait}",
        "\tport           = 0",
        "\tbind           = 127.0.0.1",
        f"\tuser           = {user}",
        f"\tserver         = {server}",
        "\tlog_on_success = PID HOST EXIT DURATION",
        "\tlog_on_failure = HOST",
    ]
    if args:
        lines.append(f"\tserver_args    = {args}")
    lines.extend(f"\t{line}" for line in extra.strip().splitlines() if line.strip())
    lines.append("}")
    return "\n".join(lines) + "\n"


def world_directory() -> Iterator[Path]:
    """A directory every user can enter (pytest's tmp_path is root-only),
    for scripts and files that servers running as nobody must reach.
    conftest.py serves it as the ``world_dir`` fixture."""
    path = Path(tempfile.mkdtemp(prefix="superd-ext-"))
    path.chmod(0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)


def script(directory: Path, name: str, body: str) -> str:
    """An executable /bin/sh script readable by everyone; returns its path."""
    path = directory / name
    path.write_text("#!/bin/sh\n" + body)
    path.chmod(stat.S_IRWXU | stat.S_IRGRP | stat.S_IXGRP | stat.S_IROTH | stat.S_IXOTH)
    return str(path)


#: A wait = yes stream server: accepts on the listening socket it was given
#: as fd 0 and answers each connection with its pid and $VARIABLE, until IDLE
#: seconds pass without a connection.
_ACCEPTOR = """\
import os, socket
listener = socket.socket(fileno=0)
listener.settimeout(IDLE)
while True:
    try:
        conn, peer = listener.accept()
    except socket.timeout:
        break
    with conn:
        conn.sendall(f"{os.getpid()} {os.environ['VARIABLE']}\\n".encode())
"""


def acceptor(directory: Path, variable: str, idle: float) -> str:
    """The path of ``_ACCEPTOR`` (run it with ``python3 -I -S``) answering
    with ``$variable`` and exiting after ``idle`` quiet seconds."""
    path = directory / "acceptor.py"
    path.write_text(_ACCEPTOR.replace("VARIABLE", variable).replace("IDLE", repr(idle)))
    path.chmod(0o644)
    return str(path)


def read_all(sock: socket.socket, limit: int = 1 << 24) -> bytes:
    """Everything until EOF."""
    chunks = []
    total = 0
    while total < limit:
        chunk = sock.recv(65536)
        if not chunk:
            break
        chunks.append(chunk)
        total += len(chunk)
    return b"".join(chunks)


def wait_until(check: Callable[[], bool], timeout: float = 10,
               interval: float = 0.05) -> bool:
    """Poll ``check`` until true or ``timeout``; returns the last result."""
    deadline = time.monotonic() + timeout
    while True:
        if check():
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(interval)


def lines_starting(superd: Superd, prefix: str) -> list[str]:
    """xinetd-format lines beginning with ``prefix``."""
    return [line for line in superd.xinetd_lines() if line.startswith(prefix)]


def pid_alive(pid: int) -> bool:
    """True if ``pid`` exists and is not a zombie."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def environ_of(pid: int) -> dict[str, str]:
    """A live process's environment."""
    with open(f"/proc/{pid}/environ", "rb") as f:
        raw = f.read()
    return dict(item.decode().split("=", 1) for item in raw.split(b"\0") if b"=" in item)
