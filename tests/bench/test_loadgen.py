"""The C load generator and spawn loop build and work against real sockets.

These prove the tools behave (counts, refusals, spawn hand-off), not how fast
anything is: speed figures belong to ``bench/run``.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
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


def _silent(conn: socket.socket) -> None:
    conn.recv(64)
    conn.recv(64)  # never answers; returns when the client gives up and closes


@pytest.mark.parametrize("server", [_echo], indirect=True)
def test_probe_mode_times_each_round_trip_on_schedule(
    binaries: dict[str, str], server: int
) -> None:
    """10 probes/s for 0.5 s: five probes, each a full echo, timed in microseconds."""
    probes = Loadgen(binaries["loadgen"], None, 0.5, 0.3).probes(server, 0.5, 10, 2000)
    assert len(probes) == 5
    assert all(p.ok and 0 < p.us < 2_000_000 for p in probes)


@pytest.mark.parametrize("server", [_silent], indirect=True)
def test_probe_mode_fails_a_probe_at_its_timeout(binaries: dict[str, str], server: int) -> None:
    """A server that never echoes: the probe fails once its timeout has passed."""
    probes = Loadgen(binaries["loadgen"], None, 0.1, 0.0).probes(server, 0.1, 10, 200)
    assert len(probes) == 1 and not probes[0].ok
    assert 200_000 <= probes[0].us < 1_500_000


def test_probe_mode_fails_a_refused_connect(binaries: dict[str, str]) -> None:
    """Nothing listens: every probe fails at once (connection refused)."""
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    probes = Loadgen(binaries["loadgen"], None, 0.3, 0.0).probes(port, 0.3, 10, 2000)
    assert len(probes) == 3 and not any(p.ok for p in probes)
    assert all(p.us < 1_000_000 for p in probes)


def _flood(binaries: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    argv = [binaries["udpflood"], *args]
    return subprocess.run(argv, capture_output=True, text=True, timeout=30, check=False)


def _drain(sock: socket.socket) -> list[tuple[bytes, tuple[str, int]]]:
    got = []
    sock.settimeout(0.2)
    try:
        while True:
            got.append(sock.recvfrom(100))
    except TimeoutError:
        return got


def test_udpflood_sends_datagrams_of_0_to_8_bytes_for_its_duration(
    binaries: dict[str, str]
) -> None:
    """At most -r per second, every size from 0 to 8 bytes, one result line."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sink:
        sink.bind(("127.0.0.1", 0))
        done = _flood(binaries, "-p", str(sink.getsockname()[1]), "-d", "0.3", "-r", "500")
        got = _drain(sink)
    assert done.returncode == 0, done.stderr
    result = dict(item.split("=", 1) for item in done.stdout.split())
    assert 64 <= int(result["sent"]) <= 500 and float(result["secs"]) >= 0.3
    assert len(got) == int(result["sent"])
    assert {len(data) for data, _ in got} == set(range(9))


def test_udpflood_can_send_from_source_port_7(binaries: dict[str, str]) -> None:
    """-b/-P bind the sender (port 7 needs root): the datagrams come from 127.0.0.4:7."""
    if os.geteuid() != 0:
        pytest.skip("binding port 7 needs root")
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sink:
        sink.bind(("127.0.0.1", 0))
        port = str(sink.getsockname()[1])
        done = _flood(binaries, "-p", port, "-d", "0.1", "-r", "100", "-b", "127.0.0.4", "-P", "7")
        got = _drain(sink)
    assert done.returncode == 0, done.stderr
    assert got and {source for _, source in got} == {("127.0.0.4", 7)}


@pytest.mark.parametrize("flag", ["-h", "-b"])
def test_udpflood_refuses_addresses_off_loopback(binaries: dict[str, str], flag: str) -> None:
    """The flood never leaves the machine: a non-loopback target or source is an error."""
    done = _flood(binaries, "-p", "9", "-d", "0.1", flag, "192.0.2.1")
    assert done.returncode == 2 and "not a loopback" in done.stderr
