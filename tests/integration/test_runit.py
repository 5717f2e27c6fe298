"""
conf/runit/superd under a real runsv (a copy of the service directory with
the install path, configuration, state and log directories pointed at the
test's): the scripts parse, superd starts and serves echo with its log
written by svlogd, and after a configuration superd refuses (exit 78) the
finish script takes the service down instead of letting runsv restart it.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.external import wait_until
from tests.integration.harness import require_program
from tests.integration.shipped import (
    CONF,
    ECHO,
    echo,
    installed_here,
    listening_port,
    replace_all,
    stop,
)

SCRIPTS = ("run", "finish", "log/run")


@pytest.mark.parametrize("script", SCRIPTS)
def test_scripts_parse(script: str) -> None:
    """``sh -n`` accepts each script, and each is executable."""
    path = CONF / "runit" / "superd" / script
    assert os.access(path, os.X_OK)
    result = subprocess.run(["sh", "-n", str(path)], capture_output=True, text=True,
                            timeout=30, check=False)
    assert (result.returncode, result.stderr) == (0, "")


class Service:
    """A runsv supervising the copied service directory."""

    def __init__(self, directory: Path, log_dir: Path, process: subprocess.Popen[bytes]) -> None:
        self.directory = directory
        self.log_dir = log_dir
        self.process = process

    def sv(self, *args: str) -> str:
        result = subprocess.run([require_program("sv"), *args, str(self.directory)],
                                capture_output=True, text=True, timeout=60, check=False)
        return result.stdout

    def log(self) -> str:
        current = self.log_dir / "current"
        return current.read_text() if current.exists() else ""


@pytest.fixture
def runsv(tmp_path: Path) -> Iterator[Service]:
    """runsv on a copy of conf/runit/superd reading tmp_path/superd; stopped by pid."""
    program = require_program("runsv")
    require_program("svlogd")
    require_program("sv")
    service = tmp_path / "sv" / "superd"
    shutil.copytree(CONF / "runit" / "superd", service)
    (tmp_path / "superd").mkdir()
    (tmp_path / "superd" / "echo").write_text(ECHO)
    log_dir = tmp_path / "log" / "daemon"
    run = service / "run"
    run.write_text(replace_all(installed_here(run.read_text()), {
        "-c /etc/superd": f"-c {tmp_path / 'superd'}",
        "--state-dir /var/lib/superd": f"--state-dir {tmp_path / 'state'}"}))
    log_run = service / "log" / "run"
    log_run.write_text(replace_all(log_run.read_text(),
                                   {"/var/log/superd/daemon": str(log_dir)}))
    # sv (called by finish) must be found as on a system with runit.
    env = {"PATH": f"{os.path.dirname(require_program('sv'))}:/usr/bin:/bin"}
    process = subprocess.Popen([program, str(service)], stdin=subprocess.DEVNULL,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                               env=env, cwd=tmp_path)
    running = Service(service, log_dir, process)
    try:
        yield running
    finally:
        stop(process)  # runsv stops the service and its log, then exits


def is_down_for_good(status: str) -> bool:
    return status.startswith("down: ") and "want up" not in status


def test_runs_serves_and_stays_down_on_78(runsv: Service) -> None:
    """superd serves echo under runsv; after SIGTERM with a broken
    configuration it is started once more, exits 78, and stays down."""
    assert wait_until(lambda: listening_port(runsv.log()) is not None, timeout=30), runsv.log()
    port = listening_port(runsv.log())
    assert port is not None
    assert echo(port, b"through runit") == b"through runit"
    assert runsv.sv("status").startswith("run: ")

    (runsv.directory.parent.parent / "superd" / "echo").write_text(
        ECHO.replace("wait = no", "wait = perhaps"))
    runsv.sv("term")  # superd exits 0; runsv starts ./run again
    refused = "wait: expected yes or no, got 'perhaps'"
    assert wait_until(lambda: refused in runsv.log(), timeout=30), runsv.log()
    # Taken down by finish: "down: DIR: Ns, normally up" (between two runs
    # runsv says "..., want up" instead).
    assert wait_until(lambda: is_down_for_good(runsv.sv("status")), timeout=30), \
        runsv.sv("status") + runsv.log()
    # Down for good: runsv would restart within a second.
    assert not wait_until(lambda: runsv.sv("status").startswith("run: "), timeout=3)
    assert runsv.log().count(refused) == 1
