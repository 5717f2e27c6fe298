"""
git under superd: ``git daemon --inetd`` run as nobody, exporting a test
repository that the real ``git clone git://...`` fetches.
"""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from pathlib import Path

from tests.integration.external import (
    SERVICE_USER,
    service_block,
    wait_until,
)
from tests.integration.harness import Superd, require_program
from tests.integration.servers import git

Factory = Callable[..., Superd]


def test_git_daemon_inetd_clone(superd_factory: Factory, conf_dir: Callable[..., Path],
                                world_dir: Path, tmp_path: Path) -> None:
    """``git clone git://127.0.0.1:PORT/repo`` through a spawned
    ``git daemon --inetd`` gets the repository's history and files."""
    git_path = require_program("git")
    repo = world_dir / "repo"
    git("init", "-q", str(repo))
    (repo / "README").write_text("served by superd\n")
    git("add", "README", cwd=repo)
    git("commit", "-q", "-m", "first", cwd=repo)
    head = git("rev-parse", "HEAD", cwd=repo).strip()
    subprocess.run(["chmod", "-R", "a+rX", str(repo)], check=True)
    # The repository belongs to root and the daemon runs as nobody: git's
    # ownership check needs safe.directory, given through ``env``.
    conf = conf_dir(git=service_block(
        "git", git_path,
        f"daemon --inetd --export-all --base-path={world_dir} {world_dir}",
        user=SERVICE_USER,
        extra="env = GIT_CONFIG_COUNT=1 GIT_CONFIG_KEY_0=safe.directory"
              " GIT_CONFIG_VALUE_0=*"))
    superd = superd_factory(conf)
    clone = tmp_path / "clone"
    git("clone", "-q", f"git://127.0.0.1:{superd.port('git')}/repo", str(clone))
    assert (clone / "README").read_text() == "served by superd\n"
    assert git("rev-parse", "HEAD", cwd=clone).strip() == head
    assert wait_until(lambda: superd.children() == [])
    # Reaped (gone from /proc) a moment before its EXIT line is logged and read.
    superd.wait_for_event(lambda e: str(e.get("xinetd_line")).startswith("EXIT: git status=0"))
