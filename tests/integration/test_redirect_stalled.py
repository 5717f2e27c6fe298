"""
A redirect relay whose clients stop reading and then leave, against the real
daemon: every session ends and every descriptor is released.

The attack: clients with a small receive buffer write 64 KiB blocks to a
relay in front of an echo server without ever reading, so every buffer on the
way fills in both directions and each side pauses the other; then they close
(with unread data, so the relay sees a reset).  Nothing may stay behind: no
session in ``superd status`` (each would hold an ``instances`` slot forever)
and no descriptor in the relay or in the upstream.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Callable
from pathlib import Path

from superd.cli.control import request
from tests.integration.external import wait_until
from tests.integration.harness import Superd
from tests.integration.test_redirect import ECHO, relay_block

#: Clients, seconds of writing, and the block each write offers.
CLIENTS = 10
WRITING = 3.0
BLOCK = b"x" * 65536
#: How long the relay may take to let go of everything once the clients left.
SETTLE = 20.0


def sessions(superd: Superd, service_id: str) -> int:
    """The live session count of ``service_id`` from the status request."""
    status = request(superd.state_dir, "status")["status"]
    (service,) = [s for s in status["services"] if s["id"] == service_id]
    return int(service["sessions"])


def stalled_clients(port: int) -> list[socket.socket]:
    """Connections with a 4 KiB receive buffer, none of them ever read."""
    clients = []
    for _ in range(CLIENTS):
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.connect(("127.0.0.1", port))
        sock.setblocking(False)
        clients.append(sock)
    return clients


def write_without_reading(clients: list[socket.socket], seconds: float) -> int:
    """Offer ``BLOCK`` to every client until ``seconds`` pass; bytes accepted."""
    sent = 0
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        progress = False
        for sock in clients:
            try:
                sent += sock.send(BLOCK)
                progress = True
            except BlockingIOError:
                pass
        if not progress:
            time.sleep(0.01)
    return sent


def test_clients_that_never_read_then_leave_release_everything(
        superd_factory: Callable[..., Superd], conf_dir: Callable[..., Path]) -> None:
    """Ten stalled-then-closed clients: 0 relay and 0 echo sessions, and both
    daemons back to their descriptor counts, within ``SETTLE`` seconds."""
    upstream = superd_factory(conf_dir(echo=ECHO))
    relay = superd_factory(conf_dir(relay=relay_block(upstream.port("echo-up"))))
    relay_fds, upstream_fds = relay.idle_fds(), upstream.idle_fds()
    clients = stalled_clients(relay.port("relay"))
    try:
        sent = write_without_reading(clients, WRITING)
        # Every buffer on the way is full: the relay holds each session.
        assert sessions(relay, "relay") == CLIENTS
        assert sent > CLIENTS * len(BLOCK)
    finally:
        for sock in clients:
            sock.close()
    assert wait_until(lambda: sessions(relay, "relay") == 0, SETTLE), (
        f"{sessions(relay, 'relay')} relay sessions left")
    assert wait_until(lambda: sessions(upstream, "echo-up") == 0, SETTLE), (
        f"{sessions(upstream, 'echo-up')} echo sessions left")
    assert not relay.fds_beyond(relay_fds, SETTLE)
    assert not upstream.fds_beyond(upstream_fds, SETTLE)
