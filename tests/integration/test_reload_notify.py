"""
systemd's notification protocol from the real daemon: READY=1 once every
service listens, RELOADING=1 then READY=1 around a reload, STOPPING=1 at stop.
"""

from __future__ import annotations

import socket
from collections.abc import Callable
from pathlib import Path

from tests.integration.conftest import StartSuperd
from tests.integration.reloading import echo_block, reload_and_wait


def states(listener: socket.socket) -> list[str]:
    """The first line of every datagram received so far."""
    found = []
    while True:
        try:
            found.append(listener.recv(4096).decode().split("\n")[0])
        except BlockingIOError:
            return found


def test_ready_reloading_stopping(superd_factory: StartSuperd,
                                  conf_dir: Callable[..., Path], tmp_path: Path) -> None:
    """The supervisor hears READY=1, RELOADING=1, READY=1 and STOPPING=1 in order."""
    path = str(tmp_path / "notify")
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as listener:
        listener.bind(path)
        listener.setblocking(False)
        superd = superd_factory(conf_dir(echo=echo_block("echo")),
                                env={"NOTIFY_SOCKET": path})
        assert reload_and_wait(superd)["ok"]
        assert superd.stop() == 0
        assert states(listener) == ["READY=1", "RELOADING=1", "READY=1", "STOPPING=1"]
