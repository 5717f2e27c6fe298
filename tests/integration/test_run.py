"""
``superd run``, the console script, starting the real daemon: it becomes
twistd in the foreground (same pid), serves, leaves no pid file, and exits
with the daemon's status on a refused configuration.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.integration.harness import start_command
from tests.integration.shipped import ECHO, echo


def superd_script() -> str:
    """The environment's ``superd`` console script."""
    script = os.path.join(os.path.dirname(sys.executable), "superd")
    if not os.path.exists(script):
        pytest.fail(f"{script} is missing: install superd into this environment")
    return script


def test_run_starts_the_daemon_in_the_foreground(
        conf_dir: Callable[..., Path], tmp_path: Path) -> None:
    """``superd run --json-log -c DIR``: the process execs twistd (same pid,
    --nodaemon), serves echo, writes no twistd.pid, and stops on SIGTERM with 0."""
    conf = conf_dir(echo=ECHO)
    work = tmp_path / "cwd"
    work.mkdir()
    superd = start_command(
        [superd_script(), "run", "--json-log", "-c", str(conf),
         "--state-dir", str(tmp_path / "state")],
        str(tmp_path / "state"), cwd=str(work))
    try:
        cmdline = Path(f"/proc/{superd.pid}/cmdline").read_bytes().split(b"\0")
        assert b"--nodaemon" in cmdline and b"--pidfile=" in cmdline
        assert any(arg.endswith(b"twistd") for arg in cmdline)
        assert echo(superd.port("echo"), b"ping") == b"ping"
    finally:
        status = superd.stop()
    assert status == 0
    assert list(work.iterdir()) == []


def test_run_refused_configuration_exits_78(conf_dir: Callable[..., Path],
                                            tmp_path: Path) -> None:
    """The daemon's own exit status comes back through ``superd run``."""
    conf = conf_dir(echo=ECHO.replace("wait = no", "wait = perhaps"))
    result = subprocess.run(
        [superd_script(), "run", "-c", str(conf), "--state-dir", str(tmp_path / "s")],
        capture_output=True, text=True, timeout=60, check=False, cwd=tmp_path)
    assert result.returncode == 78, result.stderr
    assert "wait: expected yes or no, got 'perhaps'" in result.stderr
