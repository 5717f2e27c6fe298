"""
conf/logrotate/superd with the real logrotate: ``logrotate -d`` accepts it,
and a forced rotation of a running daemon's service log renames the file and
makes superd (through ``superd reload``, the postrotate command) write the
next lines to a new one.
"""

from __future__ import annotations

import socket
import subprocess
from collections.abc import Callable
from pathlib import Path

from tests.integration.external import wait_until
from tests.integration.harness import Superd, require_program
from tests.integration.shipped import installed_here, replace_all, shipped

Factory = Callable[..., Superd]


def config(tmp_path: Path, log_dir: Path, state_dir: Path) -> Path:
    """The shipped file with the log, install and state paths of this test."""
    path = tmp_path / "logrotate.conf"
    path.write_text(replace_all(installed_here(shipped("logrotate/superd")), {
        "/var/log/superd/": f"{log_dir}/",
        "--state-dir /var/lib/superd": f"--state-dir {state_dir}"}))
    path.chmod(0o644)  # logrotate ignores a configuration others may write
    return path


def logrotate(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([require_program("logrotate"), *args], capture_output=True,
                          text=True, timeout=120, check=False)


def test_debug_run_accepts_the_file(tmp_path: Path) -> None:
    """``logrotate -d`` on a temporary state file: no error, the log considered."""
    log_dir = tmp_path / "log"
    log_dir.mkdir()
    (log_dir / "services.log").write_text("26/12/7@01:12:36: START: echo pid=0 from=::1\n")
    result = logrotate("-d", "-s", str(tmp_path / "status"),
                       str(config(tmp_path, log_dir, tmp_path / "state")))
    assert result.returncode == 0, result.stderr
    assert "error" not in result.stderr.lower(), result.stderr
    assert f"considering log {log_dir}/services.log" in result.stderr


def echo_once(port: int) -> None:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as client:
        client.sendall(b"x")
        client.recv(10)


def test_forced_rotation_reopens_the_log(superd_factory: Factory, conf_dir: Callable[..., Path],
                                         tmp_path: Path) -> None:
    """Rotated while superd runs: the old lines in services.log.1, new ones
    in a new services.log, through the postrotate reload."""
    log_dir = tmp_path / "log"
    log_dir.mkdir()
    log = log_dir / "services.log"
    state = tmp_path / "state"
    superd = superd_factory(conf_dir(echo=(
        "service echo\n{\n\ttype = INTERNAL UNLISTED\n\tsocket_type = stream\n"
        "\twait = no\n\tport = 0\n\tbind = 127.0.0.1\n"
        f"\tlog_type = FILE {log}\n\tlog_on_success = HOST\n}}\n")), state_dir=str(state))
    port = superd.port("echo")
    echo_once(port)
    assert wait_until(lambda: log.exists() and "START: echo" in log.read_text())
    result = logrotate("-f", "-s", str(tmp_path / "status"), str(config(tmp_path, log_dir, state)))
    assert result.returncode == 0, result.stderr
    superd.wait_for_event(lambda e: e.get("event") == "reload" and e.get("phase") != "start")
    echo_once(port)
    assert wait_until(lambda: log.exists() and "START: echo" in log.read_text())
    assert (log_dir / "services.log.1").read_text().count("START: echo") == 1
    assert log.read_text().count("START: echo") == 1
