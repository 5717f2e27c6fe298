"""
``wait = yes`` stream services under the real daemon: the server gets the
listening socket and accepts for itself; superd leaves the socket alone
while it runs and listens again when it exits.
"""

from __future__ import annotations

import socket
from collections.abc import Callable
from pathlib import Path

from tests.integration.external import (
    acceptor,
    read_all,
    script,
    service_block,
    wait_until,
)
from tests.integration.harness import Superd, require_program

Factory = Callable[..., Superd]


def ask(port: int) -> str:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        return read_all(sock).decode()


def test_wait_stream_server_accepts_itself(superd_factory: Factory,
                                           conf_dir: Callable[..., Path],
                                           world_dir: Path) -> None:
    """One server process answers several connections (it accepts them
    itself), sees REMOTE_HOST <no address>, and after it exits the next
    connection starts a new server."""
    python = require_program("/usr/bin/python3")
    server = acceptor(world_dir, "REMOTE_HOST", idle=0.5)
    superd = superd_factory(conf_dir(a=service_block(
        "a", python, f"-I -S {server}", wait="yes")))
    port = superd.port("a")
    first = [ask(port) for _ in range(3)]
    assert len({line.split()[0] for line in first}) == 1
    assert first[0].split(maxsplit=1)[1] == "<no address>\n"
    superd.wait_for_event(lambda e: e.get("event") == "exit", timeout=10)
    second = ask(port)
    assert second.split()[0] != first[0].split()[0]
    assert "START: a pid=" in superd.xinetd_lines()[0]
    assert superd.xinetd_lines()[0].endswith("from=<no address>")
    assert not [e for e in superd.events() if e.get("event") == "respawn_backoff"]


def test_wait_stream_server_that_never_accepts_backs_off(
        superd_factory: Factory, conf_dir: Callable[..., Path], world_dir: Path) -> None:
    """A wait=yes stream server that exits without accepting is restarted
    after 1 s, 2 s ... (logged), not as fast as the kernel allows."""
    quitter = script(world_dir, "quitter", "exit 2\n")
    superd = superd_factory(conf_dir(q=service_block("q", quitter, wait="yes")))
    with socket.create_connection(("127.0.0.1", superd.port("q")), timeout=10):
        backoffs = superd.wait_for_events(
            lambda e: e.get("event") == "respawn_backoff", 2, timeout=10)
    assert [b["delay"] for b in backoffs] == [1.0, 2.0]
    # Each run is followed by its back-off: no run in between.
    exits = [e for e in superd.events() if e.get("event") == "exit"]
    assert len(exits) <= 3
    assert wait_until(lambda: superd.children() == [])
