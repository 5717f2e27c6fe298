"""
The limits of ``--metrics`` on the real daemon: clients that trickle their
request cannot keep scrapes out and are cut at the deadline, and a request
streaming a 50 GB body is refused at once, without the daemon spooling it.
"""

from __future__ import annotations

import socket
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from superd.daemon.scrapes import DEADLINE
from tests.access.clients import block, hosts_args
from tests.integration.harness import Superd

#: Trickling connections held open, and the sources they come from.
TRICKLERS = 20
SOURCES = [f"127.0.0.{n}" for n in range(2, 7)]
#: Seconds between two bytes of a trickled request.
TRICKLE = 2.0
#: Seconds the scrapes go on while the tricklers hold on.
PRESSURE = 8.0
#: A scrape slower than this failed.
SCRAPE_BOUND = 2.0


def start(superd_factory: Callable[..., Any], conf_dir: Callable[..., Path],
          tmp_path: Path) -> tuple[Any, int]:
    superd = superd_factory(conf_dir(echo=block("echo", "echo")), *hosts_args(tmp_path),
                            "--metrics", "tcp:0:interface=127.0.0.1")
    event = superd.wait_for_event(lambda e: e.get("event") == "metrics" and e.get("port"))
    return superd, int(event["port"])


def scrape_seconds(port: int) -> float:
    """Seconds one scrape took; raises if it failed."""
    started = time.monotonic()
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics",
                                timeout=SCRAPE_BOUND) as reply:
        assert reply.status == 200
        assert b"superd_connections_accepted" in reply.read()
    return time.monotonic() - started


class Tricklers:
    """``TRICKLERS`` connections sending a request one byte per ``TRICKLE``
    seconds, each replaced when the daemon cuts it; records their lifetimes."""

    REQUEST = b"GET /metrics HTTP/1.1\r\nHost: x\r\nX-Slow: " + b"a" * 100

    def __init__(self, port: int) -> None:
        self.port = port
        self.lifetimes: list[float] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> Tricklers:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(TRICKLE + 5)

    def _open(self, index: int) -> tuple[socket.socket, float, int]:
        source = SOURCES[index % len(SOURCES)]
        sock = socket.create_connection(("127.0.0.1", self.port), 5, (source, 0))
        return sock, time.monotonic(), 0

    def _run(self) -> None:
        held = [self._open(i) for i in range(TRICKLERS)]
        try:
            while not self._stop.wait(TRICKLE):
                held = [self._step(i, *entry) for i, entry in enumerate(held)]
        finally:
            for sock, _, _ in held:
                sock.close()

    def _step(self, index: int, sock: socket.socket, opened: float,
              sent: int) -> tuple[socket.socket, float, int]:
        try:
            sock.sendall(self.REQUEST[sent:sent + 1])
            return sock, opened, sent + 1
        except OSError:  # cut by the daemon: note how long it lived, replace it
            self.lifetimes.append(time.monotonic() - opened)
            sock.close()
            return self._open(index)


def test_trickling_clients_cannot_keep_scrapes_out(superd_factory: Callable[..., Any],
                                                   conf_dir: Callable[..., Path],
                                                   tmp_path: Path) -> None:
    """Twenty connections from five addresses, each sending a byte every 2 s:
    every scrape meanwhile succeeds within SCRAPE_BOUND, and the tricklers
    are cut within a few seconds of the deadline, byte or no byte."""
    superd, port = start(superd_factory, conf_dir, tmp_path)
    durations = []
    with Tricklers(port) as tricklers:
        time.sleep(1)  # every trickler has connected and sent its first byte
        deadline = time.monotonic() + PRESSURE
        while time.monotonic() < deadline:
            durations.append(scrape_seconds(port))
            time.sleep(0.5)
    assert max(durations) < SCRAPE_BOUND
    cut = sorted(tricklers.lifetimes)
    assert len(cut) >= TRICKLERS // 2, f"only {len(cut)} tricklers were cut"
    assert cut[-1] < DEADLINE + TRICKLE + 1, f"a trickler lived {cut[-1]:.1f} s"


def deleted_files(superd: Superd) -> set[str]:
    """The daemon's descriptors on files that no longer have a name (spools)."""
    return {target for target in superd.fds() if target.endswith(" (deleted)")}


@pytest.fixture
def metrics_daemon(superd_factory: Callable[..., Any], conf_dir: Callable[..., Path],
                   tmp_path: Path) -> Iterator[tuple[Any, int]]:
    yield start(superd_factory, conf_dir, tmp_path)


@pytest.mark.parametrize("method", ["POST", "GET"])
def test_a_streamed_50_gb_body_is_refused_without_spooling(
        metrics_daemon: tuple[Any, int], method: str) -> None:
    """Content-Length 50 GB and the body streamed as fast as the daemon
    takes it: the daemon closes the connection within a second or two, never
    holds a nameless (temporary) file, and takes in at most what the kernel
    buffers."""
    superd, port = metrics_daemon
    before = deleted_files(superd)
    chunk = b"x" * 65536
    sent, spooled = 0, set()
    with socket.create_connection(("127.0.0.1", port), 5) as sock:
        sock.sendall(f"{method} /metrics HTTP/1.1\r\nHost: x\r\n"
                     "Content-Length: 50000000000\r\n\r\n".encode())
        sock.settimeout(0.1)
        started = time.monotonic()
        closed_after = None
        while time.monotonic() - started < 10:
            spooled.update(deleted_files(superd) - before)
            try:
                sent += sock.send(chunk)
            except TimeoutError:
                continue
            except OSError:  # reset or broken pipe: the daemon closed it
                closed_after = time.monotonic() - started
                break
    assert not spooled, f"{len(spooled)} spool files, {sent} bytes taken"
    assert closed_after is not None and closed_after < 3, (
        f"still open after {time.monotonic() - started:.1f} s, {sent} bytes taken")
    assert sent < 64 * 1024 * 1024
