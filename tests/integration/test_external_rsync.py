"""
rsync under superd: ``rsync --daemon`` in inetd mode (it sees a socket on
standard input), run as nobody, serving a module that the real ``rsync``
client copies; the copy must equal the source byte for byte.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from tests.integration.external import (
    SERVICE_USER,
    service_block,
    wait_until,
)
from tests.integration.harness import Superd, require_program
from tests.integration.servers import rsync_fetch, rsync_module, same_tree

Factory = Callable[..., Superd]


def test_rsync_daemon_copies_tree(superd_factory: Factory, conf_dir: Callable[..., Path],
                                  world_dir: Path, tmp_path: Path) -> None:
    """``rsync -a rsync://127.0.0.1:PORT/data/ dest/`` through a spawned
    ``rsync --daemon`` (as nobody when superd is root) reproduces the tree byte for byte."""
    rsync = require_program("rsync")
    source, config = rsync_module(world_dir, "use chroot = no\n")
    superd = superd_factory(conf_dir(rsync=service_block(
        "rsync", rsync, f"--daemon --config={config}", user=SERVICE_USER)))
    dest = tmp_path / "dest"
    result = rsync_fetch(superd.port("rsync"), dest)
    assert result.returncode == 0, result.stderr
    assert same_tree(source, dest)
    assert wait_until(lambda: superd.children() == [])
    # Reaped (gone from /proc) a moment before its EXIT line is logged and read.
    superd.wait_for_event(lambda e: str(e.get("xinetd_line")).startswith("EXIT: rsync status=0"))
