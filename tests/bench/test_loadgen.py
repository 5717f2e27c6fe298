"""The C load generator and spawn loop build and work against real sockets.

These prove the tools behave (counts, refusals, spawn hand-off), not how fast
anything is: speed figures belong to ``bench/run``.
"""

from __future__ import annotations

import os
import shutil
import socket
import threading
from collections.abc import Iterator

import pytest
from benchlib import build, procs
from benchlib.load import Loadgen

from .conftest import BENCH_DIR


@pytest.fixture(scope="module")
def binaries(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    if shutil.which("gcc") is None:
        pytest.skip("gcc not installed")
    return build.build_all(BENCH_DIR, str(tmp_path_factory.mktemp("build")))


def _serve(listener: socket.socket, handle: object, done: threading.Event) -> None:
    # close() does not wake a thread blocked in accept(): poll with a timeout.
    listener.settimeout(0.05)
    while not done.is_set():
        try:
            conn, _ = listener.accept()
        except TimeoutError:
            continue
        except OSError:
            return
        with conn:
            conn.settimeout(5)
            handle(conn)  # type: ignore[operator]


@pytest.fixture
def server(request: pytest.FixtureRequest) -> Iterator[int]:
    """A one-thread TCP server on 127.0.0.1 running the handler given by parametrize."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(64)
    done = threading.Event()
    thread = threading.Thread(target=_serve, args=(listener, request.param, done), daemon=True)
    thread.start()
    yield listener.getsockname()[1]
    done.set()
    thread.join(5)
    listener.close()


def _echo(conn: socket.socket) -> None:
    data = conn.recv(64)
    conn.sendall(data)


def _greet(conn: socket.socket) -> None:
    conn.sendall(b"hello\r\n")


def _refuse(conn: socket.socket) -> None:
    pass


@pytest.mark.parametrize("server", [_echo], indirect=True)
def test_echo_mode_counts_round_trips(binaries: dict[str, str], server: int) -> None:
    """echo mode completes full 64-byte round trips without errors."""
    sample = Loadgen(binaries["loadgen"], None, 0.3, 0.05).sample("echo", server, None, conc=2)
    assert sample.conns > 0 and sample.errors == 0
    # Bytes and completions are stamped separately, so a round trip that
    # straddles a window edge may count on one side only (at most one per slot).
    assert abs(sample.nbytes - 64 * sample.conns) <= 64 * 2


@pytest.mark.parametrize("server", [_greet], indirect=True)
def test_read_mode_counts_served_connections(binaries: dict[str, str], server: int) -> None:
    """read mode counts a connection that delivered data and then EOF."""
    sample = Loadgen(binaries["loadgen"], None, 0.3, 0.05).sample("read", server, None, conc=2)
    assert sample.conns > 0 and sample.errors == 0


@pytest.mark.parametrize("server", [_refuse], indirect=True)
def test_read_mode_counts_refusals_as_errors(binaries: dict[str, str], server: int) -> None:
    """A connection closed without data is an error, which is how bans are detected."""
    gen = Loadgen(binaries["loadgen"], None, 0.3, 0.0)
    sample = gen.sample("read", server, None, conc=1, bind="127.0.0.2")
    assert sample.conns == 0 and sample.errors > 0


def test_spawnloop_hands_the_socket_to_the_child(
    binaries: dict[str, str], tmp_path: os.PathLike[str]
) -> None:
    """The C spawn loop gives each connection its own /bin/cat, which echoes."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    argv = [binaries["spawnloop"], str(port), "/bin/cat"]
    srv = procs.start("spawnloop", argv, os.path.join(tmp_path, "log"))
    try:
        procs.wait_listening(srv, [port], timeout=10)
        sample = Loadgen(binaries["loadgen"], None, 0.3, 0.05).sample("echo", port, srv.pid)
        assert sample.conns > 0 and sample.errors == 0
        assert sample.cpu is not None
    finally:
        assert srv.stop() == 0
