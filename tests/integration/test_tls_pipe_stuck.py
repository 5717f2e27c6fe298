"""
Children behind the TLS pipe whose client is gone: ``/usr/bin/yes`` (writes,
never reads) and ``sleep`` (ignores EOF).  Each child's session counts
toward ``instances`` until the child is reaped, and once its client is gone
a child that neither reads nor exits is stopped (SIGTERM, SIGKILL after
``--grace``) and superd's descriptors for it are released.
"""

from __future__ import annotations

import socket
import ssl
import time
from collections.abc import Callable
from pathlib import Path

from tests.certs import PKI, make_pki
from tests.integration.harness import Superd, require_program

GRACE = 2.0
#: What the machine may add to the grace periods before a stop is seen.
BOUND = 8.0


def service(name: str, server: str, pki: PKI, args: str = "") -> str:
    return (f"service {name}\n{{\n\ttype = UNLISTED\n\tsocket_type = stream\n\twait = no\n"
            f"\tport = 0\n\tbind = 127.0.0.1\n\tuser = root\n\tserver = {server}\n"
            f"{args}\tinstances = 5\n\tcps = 0 0\n"
            f"\ttls_cert = {pki.server.cert_path}\n\ttls_key = {pki.server.key_path}\n"
            f"\tlog_on_success = HOST PID EXIT\n\tlog_on_failure = HOST\n}}\n")


def tls_client(port: int, pki: PKI) -> ssl.SSLSocket:
    context = ssl.create_default_context(cafile=str(pki.ca_path))
    raw = socket.create_connection(("127.0.0.1", port), timeout=10)
    return context.wrap_socket(raw, server_hostname="localhost")


def admitted(port: int, pki: PKI) -> bool:
    """True if a new client gets through: a refused one is closed before
    the handshake (access control runs first), an admitted one completes it."""
    try:
        with tls_client(port, pki):
            return True
    except (OSError, ssl.SSLError):
        return False


def flood_then_close(tls: ssl.SSLSocket, seconds: float = 1.0) -> None:
    """Send until superd stops reading (the child never reads), then close
    without reading what the child wrote."""
    tls.settimeout(0.3)
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            tls.send(b"x" * 16384)
        except (TimeoutError, ssl.SSLWantWriteError, ssl.SSLError, OSError):
            break
    tls.close()


def starts(superd: Superd) -> list[int]:
    return [int(e["pid"]) for e in superd.events() if e.get("event") == "start"]


def exits(superd: Superd) -> dict[int, dict[str, object]]:
    return {int(e["pid"]): e for e in superd.events() if e.get("event") == "exit"}


def wait_starts(superd: Superd, count: int) -> list[int]:
    superd.wait_for_event(lambda e: len(starts(superd)) >= count, timeout=10)
    return starts(superd)


def test_stuck_writers_count_and_are_stopped(
        superd_factory: Callable[..., Superd], conf_dir: Callable[..., Path],
        tmp_path: Path) -> None:
    """Five ``yes`` children of clients that flooded and closed: they hold
    the five instances (a sixth client is refused) until superd stops them
    within grace + bound; then every descriptor is released and a new
    client is served."""
    pki = make_pki(tmp_path)
    superd = superd_factory(conf_dir(yes=service("yes", require_program("yes"), pki)),
                            "--grace", str(GRACE))
    port = superd.port("yes")
    baseline = superd.idle_fds()
    clients = [tls_client(port, pki) for _ in range(5)]
    pids = wait_starts(superd, 5)
    assert not admitted(port, pki)  # five live sessions: instances = 5
    for tls in clients:
        flood_then_close(tls)
    closed = time.monotonic()
    # Their clients are gone, the children are not: they still count.
    assert not admitted(port, pki)
    superd.wait_for_event(
        lambda e: str(e.get("xinetd_line", "")).startswith("FAIL: yes service_limit"), timeout=5)
    # Stopped by superd: SIGTERM once the client has been gone for --grace.
    deadline = closed + GRACE + BOUND
    superd.wait_for_event(lambda e: set(pids) <= exits(superd).keys(),
                          timeout=max(0.1, deadline - time.monotonic()))
    ended = exits(superd)
    assert {ended[pid]["signal"] for pid in pids} == {15}
    assert not superd.fds_beyond(baseline)
    assert superd.children() == []
    assert admitted(port, pki)


def test_sleeper_counts_until_stopped(
        superd_factory: Callable[..., Superd], conf_dir: Callable[..., Path],
        tmp_path: Path) -> None:
    """``sleep`` ignores EOF: its session counts while it runs after the
    client left, then superd stops it and the slot is free again."""
    pki = make_pki(tmp_path)
    conf = conf_dir(nap=service("nap", require_program("sleep"), pki,
                                "\tserver_args = 1000\n"))
    superd = superd_factory(conf, "--grace", str(GRACE))
    port = superd.port("nap")
    baseline = superd.idle_fds()
    clients = [tls_client(port, pki) for _ in range(5)]
    pids = wait_starts(superd, 5)
    for tls in clients:
        tls.close()
    closed = time.monotonic()
    assert not admitted(port, pki)
    deadline = closed + GRACE + BOUND
    superd.wait_for_event(lambda e: set(pids) <= exits(superd).keys(),
                          timeout=max(0.1, deadline - time.monotonic()))
    assert {exits(superd)[pid]["signal"] for pid in pids} == {15}
    assert not superd.fds_beyond(baseline)
    assert admitted(port, pki)
    assert len(wait_starts(superd, 6)) == 6
