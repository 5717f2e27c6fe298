"""
conf/supervisord/superd.conf under a real supervisord (its own
configuration in a temporary directory; the section as shipped, with the
install path, configuration and state directory pointed at the test's):
superd starts and serves echo, its log is in supervisord's log directory, and
a configuration superd refuses (exit 78) is started once, not again.
"""

from __future__ import annotations

import re
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.external import wait_until
from tests.integration.harness import require_program
from tests.integration.shipped import (
    ECHO,
    echo,
    installed_here,
    listening_port,
    replace_all,
    shipped,
    stop,
)

SUPERVISORD_CONF = """\
[unix_http_server]
file = {tmp}/supervisor.sock

[supervisord]
logfile = {tmp}/supervisord.log
pidfile = {tmp}/supervisord.pid
childlogdir = {tmp}/childlog
directory = {tmp}/cwd
nodaemon = true

[rpcinterface:supervisor]
supervisor.rpcinterface_factory = supervisor.rpcinterface:make_main_rpcinterface

[supervisorctl]
serverurl = unix://{tmp}/supervisor.sock

[include]
files = {tmp}/conf.d/*.conf
"""


class Supervisord:
    """A running supervisord with the shipped section, and supervisorctl."""

    def __init__(self, tmp: Path, process: subprocess.Popen[str]) -> None:
        self.tmp = tmp
        self.process = process

    def ctl(self, *args: str) -> str:
        result = subprocess.run(
            [require_program("supervisorctl"), "-c", str(self.tmp / "supervisord.conf"), *args],
            capture_output=True, text=True, timeout=60, check=False)
        return result.stdout

    def state(self) -> str:
        """superd's state word (RUNNING, EXITED, BACKOFF, FATAL ...)."""
        fields = self.ctl("status", "superd").split()
        return fields[1] if len(fields) > 1 else ""

    def log(self) -> str:
        """supervisord's own log."""
        path = self.tmp / "supervisord.log"
        return path.read_text() if path.exists() else ""

    def program_log(self) -> str:
        """superd's output, as supervisord captured it."""
        return "".join(p.read_text() for p in sorted((self.tmp / "childlog").glob("superd-*")))

    def spawns(self) -> int:
        return self.log().count("spawned: 'superd'")


@pytest.fixture
def supervisord(tmp_path: Path) -> Iterator[Supervisord]:
    """supervisord on a temporary configuration whose superd program section
    is conf/supervisord/superd.conf reading tmp_path/superd; stopped by pid."""
    program = require_program("supervisord")
    require_program("supervisorctl")
    for name in ("conf.d", "childlog", "cwd", "superd"):
        (tmp_path / name).mkdir()
    (tmp_path / "superd" / "echo").write_text(ECHO)
    (tmp_path / "supervisord.conf").write_text(SUPERVISORD_CONF.format(tmp=tmp_path))
    (tmp_path / "conf.d" / "superd.conf").write_text(replace_all(
        installed_here(shipped("supervisord/superd.conf")),
        {"-c /etc/superd": f"-c {tmp_path / 'superd'}",
         "--state-dir /var/lib/superd": f"--state-dir {tmp_path / 'state'}"}))
    process = subprocess.Popen([program, "-c", str(tmp_path / "supervisord.conf")],
                               stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL, text=True)
    running = Supervisord(tmp_path, process)
    try:
        yield running
    finally:
        stop(process)


def test_serves_and_logs_through_supervisord(supervisord: Supervisord) -> None:
    """superd runs under supervisord, serves echo, and its log is captured."""
    assert wait_until(lambda: listening_port(supervisord.program_log()) is not None,
                      timeout=30), supervisord.log()
    assert supervisord.state() == "RUNNING"
    port = listening_port(supervisord.program_log())
    assert port is not None
    assert echo(port, b"through supervisord") == b"through supervisord"
    assert list((supervisord.tmp / "cwd").iterdir()) == []  # no twistd.pid
    supervisord.ctl("stop", "superd")
    assert wait_until(lambda: supervisord.state() == "STOPPED", timeout=30)
    assert "stopped: superd (exit status 0)" in supervisord.log()


def test_refused_configuration_is_not_restarted(supervisord: Supervisord) -> None:
    """Exit 78: EXITED after one attempt, no second spawn.  (supervisord
    retries a program that exits within startsecs whatever its status, so the
    section must say startsecs=0; how long superd takes to refuse a file
    depends on the machine, so that is checked in the text too.)"""
    assert re.search(r"^startsecs=0$", shipped("supervisord/superd.conf"), re.MULTILINE)
    assert wait_until(lambda: supervisord.state() == "RUNNING", timeout=30), supervisord.log()
    supervisord.ctl("stop", "superd")
    assert wait_until(lambda: supervisord.state() == "STOPPED", timeout=30)
    (supervisord.tmp / "superd" / "echo").write_text(ECHO.replace("wait = no", "wait = perhaps"))
    before = supervisord.spawns()
    supervisord.ctl("start", "superd")
    assert wait_until(lambda: "exit status 78" in supervisord.log(), timeout=30), \
        supervisord.log()
    assert "exited: superd (exit status 78; expected)" in supervisord.log()
    # A restart would follow the exit within supervisord's one-second tick.
    assert not wait_until(lambda: supervisord.spawns() > before + 1, timeout=4)
    assert supervisord.state() == "EXITED"
    assert supervisord.spawns() == before + 1
    assert "wait: expected yes or no, got 'perhaps'" in supervisord.program_log()
