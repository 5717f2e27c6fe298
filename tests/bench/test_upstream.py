"""bench/upstream.c, the plain server behind the redirect and TLS figures, in each mode."""

from __future__ import annotations

import os
import shutil
import socket
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from benchlib import build, procs

from .conftest import BENCH_DIR, echoed

Start = Callable[[str], int]


@pytest.fixture
def upstream(tmp_path: Path) -> Iterator[Start]:
    """Start upstream in a mode on a free port; every one is stopped by PID."""
    if shutil.which("gcc") is None:
        pytest.skip("gcc not installed")
    binary = build.build_all(BENCH_DIR, os.path.join(str(tmp_path), "build"))["upstream"]
    started: list[procs.Server] = []

    def start(mode: str) -> int:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = int(s.getsockname()[1])
        log = os.path.join(str(tmp_path), f"{mode}.log")
        started.append(procs.start(mode, [binary, mode, str(port)], log))
        procs.wait_listening(started[-1], [port])
        return port

    yield start
    for server in started:
        server.stop()


def _connect(port: int) -> socket.socket:
    conn = socket.create_connection(("127.0.0.1", port), timeout=5)
    return conn


def test_line_mode_writes_one_line_and_closes(upstream: Start) -> None:
    """Every connection gets exactly "hello\\n" and then EOF."""
    port = upstream("line")
    for _ in range(3):
        with _connect(port) as conn:
            got = b""
            while chunk := conn.recv(100):
                got += chunk
            assert got == b"hello\n"


def test_echo_mode_echoes_on_concurrent_connections(upstream: Start) -> None:
    """Two open connections each get their own bytes back, 64 KiB included."""
    port = upstream("echo")
    with _connect(port) as a, _connect(port) as b:
        for conn, payload in ((a, b"a" * 65536), (b, b"b" * 100)):
            assert echoed(conn, payload) == payload


def test_stream_mode_keeps_writing(upstream: Start) -> None:
    """A streamed connection delivers far more than one 64 KiB buffer."""
    port = upstream("stream")
    with _connect(port) as conn:
        total = 0
        while total < 1_000_000:
            chunk = conn.recv(65536)
            assert chunk, "upstream stopped streaming"
            total += len(chunk)
