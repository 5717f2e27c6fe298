"""The echo figure's peers: plain ``twistd inetd`` in a network namespace of
its own, and the C epoll echo loop (bench/echoloop.c)."""

from __future__ import annotations

import io
import os
import shutil
import socket
from pathlib import Path

import pytest
from benchlib import build, daemons, procs
from benchlib.load import Loadgen
from twisted.runner.inetdconf import InetdConf, ServicesConf

from tests.integration.harness import require_program

from .conftest import BENCH_DIR, echoed

REPO = os.path.dirname(BENCH_DIR)


@pytest.fixture(scope="module")
def binaries(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    if shutil.which("gcc") is None:
        pytest.skip("gcc not installed")
    return build.build_all(BENCH_DIR, str(tmp_path_factory.mktemp("build")))


def test_inetd_conf_is_twisted_inetd_serving_its_own_echo() -> None:
    """Twisted's parser reads one TCP service, echo on port 7, served internally."""
    known = ServicesConf()
    known.parseFile(io.StringIO("echo 7/tcp\n"))
    conf = InetdConf(knownServices=known)
    conf.parseFile(io.StringIO(daemons.inetd_conf()))
    (svc,) = conf.services
    assert (svc.name, svc.port, svc.protocol, svc.socketType) == ("echo", 7, "tcp", "stream")
    assert (svc.wait, svc.program) == ("nowait", "internal")
    assert daemons.TWISTD_INETD_PORT == 7


def test_twistd_inetd_echoes_inside_its_own_network_namespace(
    binaries: dict[str, str], tmp_path: Path
) -> None:
    """Load reaches it through nsenter; its port 7 is not the host's."""
    if os.geteuid() != 0:
        pytest.skip("a network namespace needs root")
    require_program("unshare")
    require_program("ip")
    paths = daemons.Paths(REPO, os.path.dirname(binaries["loadgen"]), str(tmp_path))
    srv = daemons.start_twistd_inetd(paths, None)
    try:
        assert srv.netns == f"/proc/{srv.pid}/ns/net"
        assert daemons.TWISTD_INETD_PORT in procs.listening_ports(srv.pid)
        assert os.readlink(srv.netns) != os.readlink("/proc/self/ns/net")
        gen = Loadgen(binaries["loadgen"], None, 0.3, 0.05)
        sample = gen.sample("echo", 7, srv.pid, conc=4, netns=srv.netns)
        assert sample.conns > 0 and sample.errors == 0
        assert sample.cpu is not None and sample.cpu > 0
    finally:
        assert srv.stop() is not None
    assert not srv.alive()


def test_echoloop_echoes_concurrent_connections_and_closes_at_eof(
    binaries: dict[str, str], tmp_path: Path
) -> None:
    """Two connections each get their own bytes back; EOF from the client closes."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    srv = procs.start("echoloop", [binaries["echoloop"], str(port)], str(tmp_path / "log"))
    try:
        procs.wait_listening(srv, [port], timeout=10)
        a = socket.create_connection(("127.0.0.1", port), timeout=5)
        b = socket.create_connection(("127.0.0.1", port), timeout=5)
        with a, b:
            for conn, payload in ((a, b"a" * 60_000), (b, b"b" * 64)):
                assert echoed(conn, payload) == payload
            a.shutdown(socket.SHUT_WR)
            assert a.recv(10) == b""
        sample = Loadgen(binaries["loadgen"], None, 0.3, 0.05).sample("echo", port, srv.pid)
        assert sample.conns > 0 and sample.errors == 0
    finally:
        assert srv.stop() == 0
