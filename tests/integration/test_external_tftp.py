"""
tftpd-hpa under superd as a ``dgram``, ``wait = yes`` service: the child gets
the bound UDP socket with the client's first request still queued, serves
it, and superd polls the socket again once it exits.  Also a datagram server
that exits at once: restarted with a logged back-off, not in a tight loop.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Callable
from pathlib import Path

from tests.integration.external import (
    needs_root,
    script,
    service_block,
    wait_until,
)
from tests.integration.harness import Superd, require_program
from tests.integration.servers import tftp_get

Factory = Callable[..., Superd]


@needs_root
def test_tftpd_serves_files_and_respawns(superd_factory: Factory,
                                         conf_dir: Callable[..., Path],
                                         world_dir: Path, tmp_path: Path) -> None:
    """Two files fetched with the real tftp client; the server (which exits
    after 1 s idle) is started again for the second, each with REMOTE_HOST of
    its first request's source, and no back-off is logged."""
    tftpd = require_program("in.tftpd")
    serve = world_dir / "tftp"
    serve.mkdir()
    serve.chmod(0o755)
    first, second = os.urandom(70_000), os.urandom(1234)
    for name, data in (("first.bin", first), ("second.bin", second)):
        (serve / name).write_bytes(data)
        (serve / name).chmod(0o644)
    # -s chroots (needs root); in.tftpd then drops to nobody itself.
    conf = conf_dir(tftp=service_block("tftp", tftpd, f"-s {serve} -t 1", user="root",
                                       wait="yes", socket_type="dgram"))
    superd = superd_factory(conf)
    port = superd.port("tftp", "udp")
    result = tftp_get(port, "first.bin", tmp_path / "first.bin")
    assert result.returncode == 0 and not result.stderr.strip(), result.stderr
    assert (tmp_path / "first.bin").read_bytes() == first
    superd.wait_for_event(lambda e: e.get("event") == "exit", timeout=15)
    result = tftp_get(port, "second.bin", tmp_path / "second.bin")
    assert (tmp_path / "second.bin").read_bytes() == second, result.stderr
    assert wait_until(lambda: len([e for e in superd.events() if e.get("event") == "exit"])
                      == 2, timeout=15)
    starts = [line for line in superd.xinetd_lines() if line.startswith("START: tftp")]
    assert len(starts) == 2 and all(line.endswith("from=127.0.0.1") for line in starts)
    assert not [e for e in superd.events() if e.get("event") == "respawn_backoff"]


def test_dgram_server_exiting_at_once_backs_off(superd_factory: Factory,
                                                conf_dir: Callable[..., Path],
                                                world_dir: Path) -> None:
    """A wait=yes datagram server that exits without reading: superd logs a
    back-off (1 s, 2 s, ...) instead of restarting it dozens of times a
    second, and the datagram stays queued for the next attempt."""
    quitter = script(world_dir, "quitter", "exit 1\n")
    superd = superd_factory(conf_dir(q=service_block("q", quitter, wait="yes",
                                                     socket_type="dgram")))
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as client:
        client.sendto(b"anyone?", ("127.0.0.1", superd.port("q", "udp")))
        backoffs = superd.wait_for_events(
            lambda e: e.get("event") == "respawn_backoff", 2, timeout=10)
    assert [b["delay"] for b in backoffs] == [1.0, 2.0]
    # Each run is followed by its back-off: no run in between.
    exits = [e for e in superd.events() if e.get("event") == "exit"]
    assert 2 <= len(exits) <= 3
    assert all(e["status"] == 1 for e in exits)
